package e2ee

import (
	"context"
	"fmt"
	"time"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// RoomGhost names the ghost of the portal a room is: the other member of
// the DM, whose device encrypts what the user's double puppet sends there.
// It fails for a room that is no portal.
type RoomGhost func(ctx context.Context, roomID id.RoomID) (id.UserID, error)

// AttachDoublePuppet returns the hook that makes a double puppet's intent
// encrypt what it sends into an encrypted room (the user's own messages
// from their other device on the network, and their edits and reactions)
// with the device of the portal's ghost, sent as the user.
//
// The user gets no device of the bridge's on purpose. A device on the
// user's account is one of theirs to every client: all of the user's
// clients would share with it the room keys of every encrypted room the
// user is in, so the bridge could read all of the user's conversations, not
// only the portals, and the user would see an unknown session of their own
// (Element asks them to verify or remove it). The ghost's device is in the
// portal anyway, and its outbound Megolm session is already shared with the
// user's devices, so they can decrypt the echo with the keys they have.
//
// The price: the event's sender is the user while its session belongs to a
// device of the ghost, so clients mark it as sent by a device its sender
// does not own (a warning on the event; matrix-nio decrypts it and leaves it
// unverified). docs/design.md says so.
func (m *Manager) AttachDoublePuppet(roomGhost RoomGhost) func(*mas.IntentAPI) {
	return func(intent *mas.IntentAPI) {
		if intent != nil {
			intent.Client.Crypto = &puppetCrypto{m: m, roomGhost: roomGhost}
		}
	}
}

// puppetCrypto is a double puppet's mautrix.CryptoHelper: every call goes to
// the helper of the room's ghost.
type puppetCrypto struct {
	m         *Manager
	roomGhost RoomGhost
}

var _ mautrix.CryptoHelper = (*puppetCrypto)(nil)

func (p *puppetCrypto) ghost(ctx context.Context, roomID id.RoomID) (*ghostCrypto, error) {
	ghost, err := p.roomGhost(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("find the ghost whose device encrypts for the double puppet in %s: %w", roomID, err)
	}
	return &ghostCrypto{m: p.m, userID: ghost}, nil
}

func (p *puppetCrypto) Init(context.Context) error { return nil }

// Encrypt fails rather than letting anything out in plaintext when the room
// has no ghost to encrypt with.
func (p *puppetCrypto) Encrypt(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) (*event.EncryptedEventContent, error) {
	g, err := p.ghost(ctx, roomID)
	if err != nil {
		return nil, err
	}
	return g.Encrypt(ctx, roomID, evtType, content)
}

// Decrypt opens the double puppet's own events (a send in doubt looked for
// in the room): the ghost's device keeps the keys of its sessions.
func (p *puppetCrypto) Decrypt(ctx context.Context, evt *event.Event) (*event.Event, error) {
	g, err := p.ghost(ctx, evt.RoomID)
	if err != nil {
		return nil, err
	}
	return g.Decrypt(ctx, evt)
}

func (p *puppetCrypto) WaitForSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, timeout time.Duration) bool {
	g, err := p.ghost(ctx, roomID)
	return err == nil && g.WaitForSession(ctx, roomID, senderKey, sessionID, timeout)
}

func (p *puppetCrypto) RequestSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, userID id.UserID, deviceID id.DeviceID) {
	if g, err := p.ghost(ctx, roomID); err == nil {
		g.RequestSession(ctx, roomID, senderKey, sessionID, userID, deviceID)
	}
}
