package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/devstack"
)

// proofTimeout bounds the wait for the DM; a cold start of every piece
// takes a few seconds.
const proofTimeout = 90 * time.Second

// proof is what the demo shows: each part read back from the homeserver
// as alice's own client would see it.
type proof struct {
	room    id.RoomID
	ghost   id.UserID
	invite  *event.Event
	direct  map[id.UserID][]id.RoomID
	message *event.Event
}

// prove has bob send alice a message over XMPP and checks, as alice on
// Matrix, that it became a proper DM: the room is in her m.direct under
// bob's ghost, the ghost invited her with is_direct, she is joined, and
// her /sync has the message.
func (d *demo) prove(ctx context.Context) (*proof, error) {
	ctx, cancel := context.WithTimeout(ctx, proofTimeout)
	defer cancel()
	alice, err := mautrix.NewClient(d.hs.URL, "", "")
	if err != nil {
		return nil, err
	}
	_, err = alice.Login(ctx, &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"},
		Password:   d.secrets.aliceMatrix, InitialDeviceDisplayName: "dmbridge-demo", StoreCredentials: true,
	})
	if err != nil {
		return nil, fmt.Errorf("logging in as alice: %w", err)
	}
	defer func() { _, _ = alice.Logout(context.WithoutCancel(ctx)) }()

	bob := "bob@" + devstack.ProsodyDomain
	body := "Hi Alice! This is Bob, writing from XMPP."
	d.say("bob@localhost sends alice@localhost over XMPP: %q", body)
	if err := sendAsBob(ctx, d.xmpp.Addr(), bob, d.secrets.bobXMPP, "alice@"+devstack.ProsodyDomain, body, "demo-"+devstack.RandomHex(6)); err != nil {
		return nil, err
	}
	p := &proof{ghost: d.bridgeCfg.GhostUserID(bob)}

	// The room is in m.direct last of all the bridge's steps.
	err = poll(ctx, "the DM in alice's m.direct under "+string(p.ghost), func() (bool, error) {
		p.direct = map[id.UserID][]id.RoomID{}
		err := alice.GetAccountData(ctx, event.AccountDataDirectChats.Type, &p.direct)
		if errors.Is(err, mautrix.MNotFound) {
			return false, nil
		}
		if rooms := p.direct[p.ghost]; len(rooms) > 0 {
			p.room = rooms[len(rooms)-1]
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return nil, err
	}
	joined, err := alice.JoinedRooms(ctx)
	if err != nil {
		return nil, fmt.Errorf("alice's joined rooms: %w", err)
	}
	if !slices.Contains(joined.JoinedRooms, p.room) {
		return nil, fmt.Errorf("alice is not joined to %s", p.room)
	}
	if p.invite, err = findInvite(ctx, alice, p.room); err != nil {
		return nil, err
	}
	if p.invite.Sender != p.ghost {
		return nil, fmt.Errorf("alice was invited by %s, not by bob's ghost %s", p.invite.Sender, p.ghost)
	}
	if !p.invite.Content.AsMember().IsDirect {
		return nil, fmt.Errorf("alice's invite to %s is not marked is_direct", p.room)
	}
	err = poll(ctx, "bob's message in alice's /sync", func() (bool, error) {
		p.message, err = syncedMessage(ctx, alice, p.room, body)
		return p.message != nil, err
	})
	if err != nil {
		return nil, err
	}
	if p.message.Sender != p.ghost {
		return nil, fmt.Errorf("the message was sent by %s, not by bob's ghost %s", p.message.Sender, p.ghost)
	}
	return p, nil
}

// findInvite reads the room's history for alice's invite member event.
func findInvite(ctx context.Context, c *mautrix.Client, room id.RoomID) (*event.Event, error) {
	resp, err := c.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", room, err)
	}
	for _, evt := range resp.Chunk {
		if evt.Type != event.StateMember || evt.GetStateKey() != string(c.UserID) {
			continue
		}
		_ = evt.Content.ParseRaw(evt.Type)
		if evt.Content.AsMember().Membership == event.MembershipInvite {
			return evt, nil
		}
	}
	return nil, fmt.Errorf("no invite of %s in the history of %s", c.UserID, room)
}

// syncedMessage looks for the message in an initial /sync, the way a
// client that has just logged in sees the room.
func syncedMessage(ctx context.Context, c *mautrix.Client, room id.RoomID, body string) (*event.Event, error) {
	resp, err := c.SyncRequest(ctx, 0, "", `{"room":{"timeline":{"limit":100}}}`, false, "")
	if err != nil {
		return nil, err
	}
	joined := resp.Rooms.Join[room]
	if joined == nil {
		return nil, nil
	}
	for _, evt := range joined.Timeline.Events {
		if evt.Type != event.EventMessage {
			continue
		}
		_ = evt.Content.ParseRaw(evt.Type)
		if msg := evt.Content.AsMessage(); msg != nil && msg.Body == body {
			evt.RoomID = room
			return evt, nil
		}
	}
	return nil, nil
}

// poll calls cond until it holds or ctx ends.
func poll(ctx context.Context, what string, cond func() (bool, error)) error {
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), lastErr)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// compact renders an event's JSON the way the homeserver returned it,
// minus what only clutters the page (unsigned, hashes).
func compact(evt *event.Event) string {
	view := map[string]any{
		"type": evt.Type.Type, "event_id": evt.ID, "sender": evt.Sender,
		"content": json.RawMessage(evt.Content.VeryRaw),
	}
	if evt.StateKey != nil {
		view["state_key"] = *evt.StateKey
	}
	out, err := json.Marshal(view)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(out)
}
