package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
	"github.com/dmbridge/dmbridge/xmppconnector"
)

// The XMPP end-to-end tests run every real piece: Dendrite, the bridge
// (in-process, so it can be restarted), Prosody, and the reference XMPP
// connector (in-process, so it can be stopped and started). Bob is a
// separate XMPP client on the same Prosody; alice is a Matrix user whose
// XMPP account the connector logs in to.

const (
	xeAlicePW = "alice-xmpp-pw"
	xeBobPW   = "bob-xmpp-pw"
	xeWait    = 30 * time.Second
)

type xmppStack struct {
	*stack
	t      *testing.T
	xmpp   *testxmpp.Server
	bob    *testxmpp.Client
	login  string // alice's XMPP JID: the connector's login id
	bobJID string

	connCfg  xmppconnector.Config
	connStop func() // nil while the connector is stopped
}

func newXMPPStack(t *testing.T) *xmppStack {
	t.Helper()
	// Prosody's upload service and the connector's avatar server are on
	// loopback.
	// Dendrite pushes no redactions, typing or receipts: the bridge follows
	// alice's /sync for them, as the demo and a Dendrite deployment do.
	return newXMPPStackWith(t, stackOptions{mediaFetchAllow: loopbackMedia,
		configure: func(c *config.Config) { c.DoublePuppet.Sync = true }})
}

func newXMPPStackWith(t *testing.T, o stackOptions) *xmppStack {
	t.Helper()
	s := newStack(t, testdb.SQLite(t), o)
	srv := testxmpp.Start(t, o.xmpp...)
	srv.Register(t, "alice", xeAlicePW)
	srv.Register(t, "bob", xeBobPW)
	x := &xmppStack{stack: s, t: t, xmpp: srv, login: srv.JID("alice"), bobJID: srv.JID("bob")}
	x.connCfg = xmppconnector.Config{
		Bridge:   xmppconnector.BridgeConfig{URL: "ws://" + s.cfg.Connector.Listen, Token: testConnectorToken},
		Database: filepath.Join(t.TempDir(), "xmpp-connector.db"),
		XMPP: xmppconnector.XMPPConfig{
			Server:     srv.Addr(),
			TLS:        xmppconnector.TLSPlaintext,
			MinBackoff: 100 * time.Millisecond,
			MaxBackoff: time.Second,
			// A restarted server closes the stream, which is noticed at
			// once; the ping is for the connections that just go quiet.
			PingInterval: 5 * time.Second,
			UploadAllow:  loopbackMedia,
		},
		Avatars:  xmppconnector.AvatarConfig{Listen: "127.0.0.1:0"},
		Accounts: []xmppconnector.AccountConfig{{JID: x.login, Password: xeAlicePW, MatrixUser: string(s.alice.UserID)}},
	}
	if !o.noConnector {
		x.startConnector()
	}
	x.bob = srv.Dial(t, "bob", xeBobPW)
	return x
}

// startConnector runs the XMPP connector until stopConnector (or the end
// of the test), and waits until the bridge knows alice's XMPP account is
// connected.
func (x *xmppStack) startConnector() {
	x.t.Helper()
	cfg := x.connCfg
	cfg.Accounts = slices.Clone(x.connCfg.Accounts)
	log := zerolog.New(zerolog.NewTestWriter(x.t)).Level(zerolog.WarnLevel).With().Str("side", "xmpp-connector").Logger()
	c, err := xmppconnector.New(context.Background(), &cfg, log)
	if err != nil {
		x.t.Fatalf("xmpp connector: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				x.t.Errorf("xmpp connector Run: %v", err)
			}
			_ = c.Close()
		})
	}
	x.connStop = stop
	x.t.Cleanup(stop)
	x.waitLoginState("connected")
}

func (x *xmppStack) stopConnector() {
	x.t.Helper()
	if x.connStop != nil {
		x.connStop()
		x.connStop = nil
	}
}

// waitLoginState waits for the bridge's record of alice's XMPP login.
func (x *xmppStack) waitLoginState(state string) {
	x.t.Helper()
	tesths.WaitFor(x.t, xeWait, "login "+x.login+" "+state, func() (bool, error) {
		var got string
		err := x.br.DB.QueryRow(context.Background(), "SELECT state FROM login WHERE id=$1", x.login).Scan(&got)
		return got == state, err
	})
}

// portal waits for the bridge's portal room of bob's chat.
func (x *xmppStack) portal() id.RoomID {
	x.t.Helper()
	return x.portalOf(x.bobJID)
}

// portalOf waits for the bridge's portal room of alice's chat with a JID.
func (x *xmppStack) portalOf(jid string) id.RoomID {
	x.t.Helper()
	return x.portalRoom(xeWait, "portal room for "+jid, x.login, jid, "")
}

func (x *xmppStack) ghostID() id.UserID { return x.ghost(x.bobJID) }

// bobSays sends a chat message from bob to alice and returns its id.
func (x *xmppStack) bobSays(body string) string {
	x.t.Helper()
	return x.bob.SendChat(x.t, x.login, body, "")
}

// bobOpens has bob write body to alice, which makes their portal, and
// waits until alice sees it there; it returns the room, the Matrix event
// and bob's XMPP id of the message.
func (x *xmppStack) bobOpens(body string) (id.RoomID, *event.Event, string) {
	x.t.Helper()
	xmppID := x.bobSays(body)
	room := x.portal()
	return room, x.waitMessage(room, body), xmppID
}

// newXMPPChat starts the XMPP stack and has bob open the portal with body
// (bobOpens); it returns the stack and the portal room.
func newXMPPChat(t *testing.T, body string) (*xmppStack, id.RoomID) {
	t.Helper()
	x := newXMPPStack(t)
	room, _, _ := x.bobOpens(body)
	return x, room
}

// aliceSends sends content from alice's Matrix client into the room and
// returns the event's id.
func (x *xmppStack) aliceSends(room id.RoomID, content *event.MessageEventContent) id.EventID {
	x.t.Helper()
	resp, err := x.alice.SendMessageEvent(context.Background(), room, event.EventMessage, content)
	if err != nil {
		x.t.Fatal(err)
	}
	return resp.EventID
}

// aliceSays sends a text message from alice's Matrix client into the room,
// as Client.SendText does, and returns the event's id.
func (x *xmppStack) aliceSays(room id.RoomID, text string) id.EventID {
	x.t.Helper()
	return x.aliceSends(room, &event.MessageEventContent{MsgType: event.MsgText, Body: text})
}

// bobGets waits for the next message to bob that has a body.
func (x *xmppStack) bobGets(match func(*testxmpp.Message) bool) *testxmpp.Message {
	x.t.Helper()
	return x.bob.Next(x.t, xeWait, match)
}

// roomEvent waits for an event in alice's sync of the room.
func (x *xmppStack) roomEvent(room id.RoomID, match func(*event.Event) bool) *event.Event {
	x.t.Helper()
	return x.sync.WaitEvent(x.t, xeWait, func(evt *event.Event) bool {
		return evt.RoomID == room && match(evt)
	})
}

// roomEventAfter waits for an event in alice's sync of the room that
// arrived after prev: a state like "not typing" must not be matched by an
// event from before the change that the test is looking for.
func (x *xmppStack) roomEventAfter(room id.RoomID, prev *event.Event, match func(*event.Event) bool) *event.Event {
	x.t.Helper()
	var found *event.Event
	tesths.WaitFor(x.t, xeWait, "a newer matching event in the sync", func() (bool, error) {
		evts := x.sync.Events(room)
		i := slices.Index(evts, prev)
		if i < 0 {
			return false, fmt.Errorf("event %s not among the room's events", prev.ID)
		}
		for _, evt := range evts[i+1:] {
			if match(evt) {
				found = evt
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// relation returns an event's m.relates_to as sent, whatever its type.
func relation(evt *event.Event) (relType, eventID, key string) {
	var c struct {
		RelatesTo struct {
			RelType string `json:"rel_type"`
			EventID string `json:"event_id"`
			Key     string `json:"key"`
		} `json:"m.relates_to"`
	}
	_ = json.Unmarshal(evt.Content.VeryRaw, &c)
	return c.RelatesTo.RelType, c.RelatesTo.EventID, c.RelatesTo.Key
}

// noMoreFor checks that bob gets no further message matching match within
// a short while: "once" means once.
func (x *xmppStack) noMoreFor(what string, match func(*testxmpp.Message) bool) {
	x.t.Helper()
	time.Sleep(time.Second)
	for _, m := range x.bob.Drain() {
		if match(m) {
			x.t.Errorf("bob got %s again: %+v", what, m)
		}
	}
}

func withBodyText(body string) func(*testxmpp.Message) bool {
	return func(m *testxmpp.Message) bool { return m.Body == body }
}
