package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

const fidBob = "bob@network"

// newFidelityStack is newStack on SQLite with the bridge config adjusted
// before the bridge starts (the config is shared with the running bridge,
// so it must not change afterwards).
func newFidelityStack(t *testing.T, target testdb.Target, adjust func(*config.Config)) *stack {
	t.Helper()
	return newStack(t, target, stackOptions{configure: adjust})
}

// newFidPortal is the usual start of a fidelity test: a stack on target, a
// fake connector, and bob's portal made by his first message (msgID,
// text), whose Matrix event it returns with the room.
func newFidPortal(t *testing.T, target testdb.Target, msgID, text string) (*stack, *fakeConnector, id.RoomID, *event.Event) {
	t.Helper()
	s := newFidelityStack(t, target, nil)
	f := s.fidConnect(fakeSetup{})
	roomID, first := s.fidPortal(f, msgID, text)
	return s, f, roomID, first
}

// fidConnect replaces the running fake connector with one set up as o.
func (s *stack) fidConnect(o fakeSetup) *fakeConnector {
	s.t.Helper()
	if s.fake != nil {
		s.fake.stop()
	}
	return s.connectFakeWith(o)
}

// fidPortal makes bob's portal with a first message and returns its room
// and the Matrix event of that message.
func (s *stack) fidPortal(f *fakeConnector, msgID, text string) (id.RoomID, *event.Event) {
	s.t.Helper()
	f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, Contact: &connector.Contact{ID: fidBob, Name: "Bob"}})
	f.send(textFrom(fidBob, msgID, text))
	roomID := s.roomOf(fidBob)
	return roomID, s.waitMessage(roomID, text)
}

// fidBobSays sends bob's text message msgID and waits until alice sees it
// in the room. Sent after events that should change nothing, it shows the
// bridge has handled them: the connector's events are applied in order.
func (s *stack) fidBobSays(f *fakeConnector, roomID id.RoomID, msgID, text string) {
	s.t.Helper()
	f.send(textFrom(fidBob, msgID, text))
	s.waitMessage(roomID, text)
}

// fidShown sends bob's event ev and waits for the message it shows as in
// the room, found by its text; it returns that message's content.
func (s *stack) fidShown(f *fakeConnector, roomID id.RoomID, ev *connector.Event) *event.MessageEventContent {
	s.t.Helper()
	f.send(ev)
	return s.waitMessage(roomID, ev.Text).Content.AsMessage()
}

// fidWaitCommand waits until the connector got a command of op that matches.
func (f *fakeConnector) fidWaitCommand(op string, match func(*connector.Command) bool) connector.Command {
	f.t.Helper()
	var got connector.Command
	tesths.WaitFor(f.t, 20*time.Second, op+" at the connector", func() (bool, error) {
		for _, c := range f.commandsOf(op) {
			if match == nil || match(&c) {
				got = c
				return true, nil
			}
		}
		return false, nil
	})
	return got
}

// fidCommandsFor is the commands of op the connector got with txn.
func (f *fakeConnector) fidCommandsFor(op, txn string) []connector.Command {
	var out []connector.Command
	for _, c := range f.commandsOf(op) {
		if c.Txn == txn {
			out = append(out, c)
		}
	}
	return out
}

// fidSendFromMatrix sends content as alice's message in the room and
// returns the send_message command the connector got for it (the command's
// txn is the event's id).
func (s *stack) fidSendFromMatrix(f *fakeConnector, roomID id.RoomID, content *event.MessageEventContent) connector.Command {
	s.t.Helper()
	resp, err := s.alice.SendMessageEvent(context.Background(), roomID, event.EventMessage, content)
	if err != nil {
		s.t.Fatal(err)
	}
	return f.fidWaitCommand(connector.OpSendMessage, func(c *connector.Command) bool { return c.Txn == string(resp.EventID) })
}

// fidRoomEvent waits for an event of the type in the room that matches.
func (s *stack) fidRoomEvent(roomID id.RoomID, typ event.Type, match func(*event.Event) bool) *event.Event {
	s.t.Helper()
	return s.sync.WaitEvent(s.t, 20*time.Second, func(evt *event.Event) bool {
		return evt.RoomID == roomID && evt.Type.Type == typ.Type && (match == nil || match(evt))
	})
}

// fidNotice waits for an m.notice in the room whose body contains all parts.
func (s *stack) fidNotice(roomID id.RoomID, parts ...string) *event.Event {
	s.t.Helper()
	return s.fidRoomEvent(roomID, event.EventMessage, func(evt *event.Event) bool {
		msg := evt.Content.AsMessage()
		if msg == nil || msg.MsgType != event.MsgNotice {
			return false
		}
		for _, p := range parts {
			if !fidContains(msg.Body, p) {
				return false
			}
		}
		return true
	})
}

func fidContains(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// fidPush hands the bridge's appservice listener a transaction, as a
// homeserver does: timeline events and ephemeral events (typing, receipts,
// presence). Tests use it for what Dendrite never pushes to appservices.
func (s *stack) fidPush(events []json.RawMessage, ephemeral []json.RawMessage) {
	s.t.Helper()
	body, err := json.Marshal(map[string]any{"events": orEmpty(events), "ephemeral": orEmpty(ephemeral)})
	if err != nil {
		s.t.Fatal(err)
	}
	s.fidPushRaw(body)
}

func (s *stack) fidPushRaw(body []byte) {
	s.t.Helper()
	txnURL := s.cfg.Appservice.Address + "/_matrix/app/v1/transactions/fid-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	req, err := http.NewRequest(http.MethodPut, txnURL, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.Appservice.HSToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		s.t.Fatalf("appservice transaction: HTTP %d: %s", resp.StatusCode, msg)
	}
}

func orEmpty(list []json.RawMessage) []json.RawMessage {
	if list == nil {
		return []json.RawMessage{}
	}
	return list
}

// fidDeliverRedaction pushes a redaction that Dendrite stored to the bridge
// (the fake and the XMPP tests both use it).
// Dendrite v0.15.2 never sends m.room.redaction to appservices (its sync API
// drops redactions before they reach the appservice stream), so the test
// plays the part of a homeserver that does, with Dendrite's own event JSON.
func (s *stack) fidDeliverRedaction(roomID id.RoomID, eventID id.EventID) {
	s.t.Helper()
	var raw json.RawMessage
	// The redaction is readable only once Dendrite's sync API has stored it.
	tesths.WaitFor(s.t, 20*time.Second, "redaction "+string(eventID)+" readable", func() (bool, error) {
		_, err := s.alice.MakeRequest(context.Background(), http.MethodGet,
			s.alice.BuildClientURL("v3", "rooms", roomID, "event", eventID), nil, &raw)
		return err == nil, err
	})
	s.fidPush([]json.RawMessage{raw}, nil)
}
