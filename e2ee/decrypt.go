package e2ee

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// ErrUndecryptable wraps why an event could not be decrypted.
var ErrUndecryptable = errors.New("cannot decrypt")

// Decrypt decrypts the user's encrypted event with the ghost's device. A
// room key that has not arrived yet (it travels by to-device message, which
// may come after the event) is waited for, then asked for from the
// sender's device and waited for once more.
func (m *Manager) Decrypt(ctx context.Context, ghost id.UserID, evt *event.Event) (*event.Event, error) {
	d, err := m.active(ctx, ghost)
	if err != nil {
		return nil, err
	}
	if _, ok := evt.Content.Parsed.(*event.EncryptedEventContent); !ok {
		if err := evt.Content.ParseRaw(event.EventEncrypted); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUndecryptable, err)
		}
	}
	content := evt.Content.AsEncrypted()
	dec, err := d.mach.DecryptMegolmEvent(ctx, evt)
	if !errors.Is(err, crypto.ErrNoSessionFound) {
		return wrap(dec, err)
	}
	log := zerolog.Ctx(ctx).With().Stringer("session_id", content.SessionID).Logger()
	log.Debug().Msg("Room key not here yet, waiting for it")
	if !d.mach.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, m.keyWait) {
		log.Info().Msg("Room key did not come, asking the sender's device for it")
		m.requestKey(ctx, d.mach, evt.RoomID, content.SenderKey, content.SessionID, evt.Sender, content.DeviceID)
		d.mach.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, m.keyWait)
	}
	return wrap(d.mach.DecryptMegolmEvent(ctx, evt))
}

func wrap(evt *event.Event, err error) (*event.Event, error) {
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecryptable, err)
	}
	return evt, nil
}

func (m *Manager) requestKey(ctx context.Context, mach *crypto.OlmMachine, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, userID id.UserID, deviceID id.DeviceID) {
	if deviceID == "" {
		deviceID = "*"
	}
	err := mach.SendRoomKeyRequest(ctx, roomID, senderKey, sessionID, "", map[id.UserID][]id.DeviceID{userID: {deviceID}})
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to send room key request")
	}
}
