package e2ee

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// ghostCrypto is a ghost's mautrix.CryptoHelper: mautrix's client calls it
// to encrypt what the ghost's intent sends into an encrypted room.
type ghostCrypto struct {
	m      *Manager
	userID id.UserID
}

var _ mautrix.CryptoHelper = (*ghostCrypto)(nil)

func (g *ghostCrypto) Init(context.Context) error { return nil }

// Encrypt encrypts with the ghost's outbound Megolm session for the room,
// sharing a new one with the members' devices when there is none yet (or it
// expired, or a member's device has not got it).
func (g *ghostCrypto) Encrypt(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) (*event.EncryptedEventContent, error) {
	for attempt := 0; ; attempt++ {
		d, err := g.m.active(ctx, g.userID)
		if err != nil {
			return nil, err
		}
		enc, err := g.encrypt(ctx, d, roomID, evtType, content)
		if attempt == 0 && errors.Is(err, mautrix.MUnknownToken) {
			// The homeserver dropped the device's token (logged out or
			// deleted) and its /sync loop has not noticed yet, or is
			// renewing it now: the message would fail and the user would
			// see a notice. Once the device is logged in again (or
			// replaced, if that fails), it is encrypted again with it.
			zerolog.Ctx(ctx).Warn().Err(err).Msg("Ghost device's token was dropped while sharing a room key; renewing it and trying again")
			g.m.dropped(d)
			continue
		}
		return enc, err
	}
}

func (g *ghostCrypto) encrypt(ctx context.Context, d *device, roomID id.RoomID, evtType event.Type, content any) (*event.EncryptedEventContent, error) {
	mach := d.mach
	d.encMu.Lock()
	defer d.encMu.Unlock()
	enc, err := mach.EncryptMegolmEvent(ctx, roomID, evtType, content)
	if errors.Is(err, crypto.ErrSessionExpired) || errors.Is(err, crypto.ErrSessionNotShared) || errors.Is(err, crypto.ErrNoGroupSession) {
		// A new session goes to the members the homeserver knows now (one
		// request per session): the bridge sees no member events from
		// before its ghost was in the room, such as the creator's join.
		if _, err := mach.Client.Members(ctx, roomID); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to fetch room members, using the stored ones")
		}
		users, err := g.m.members(ctx, roomID)
		if err != nil {
			return nil, fmt.Errorf("members of %s: %w", roomID, err)
		}
		if err = mach.ShareGroupSession(ctx, roomID, users); err != nil {
			return nil, fmt.Errorf("share room key: %w", err)
		}
		return mach.EncryptMegolmEvent(ctx, roomID, evtType, content)
	}
	return enc, err
}

// Decrypt opens an event at once, without waiting for a missing key: the
// bridge uses it on the ghost's own events, whose keys it has or never will.
func (g *ghostCrypto) Decrypt(ctx context.Context, evt *event.Event) (*event.Event, error) {
	d, err := g.m.device(ctx, g.userID)
	if err != nil {
		return nil, err
	}
	return d.mach.DecryptMegolmEvent(ctx, evt)
}

func (g *ghostCrypto) WaitForSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, timeout time.Duration) bool {
	mach, err := g.m.Active(ctx, g.userID)
	return err == nil && mach.WaitForSession(ctx, roomID, senderKey, sessionID, timeout)
}

func (g *ghostCrypto) RequestSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, userID id.UserID, deviceID id.DeviceID) {
	if mach, err := g.m.Active(ctx, g.userID); err == nil {
		g.m.requestKey(ctx, mach, roomID, senderKey, sessionID, userID, deviceID)
	}
}
