package portal

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// The first message of a chat creates the DM as the contact's ghost, with
// the user invited as a direct chat and the room marked as bridged; the
// double puppet joins and lists the room in m.direct. Later messages of the
// chat cost one send each and nothing else.
func TestUnitFirstMessageCreatesDM(t *testing.T) {
	u := newUnit(t, true)
	u.hs.SetAccountData(unitUser, event.AccountDataDirectChats.Type, map[string][]string{"@carol:x": {"!c:x"}})
	u.remote(t, fromBob("m1", "hello"))

	creates := u.hs.Calls("CreateRoom")
	if len(creates) != 1 || creates[0].User != unitGhost {
		t.Fatalf("CreateRoom calls = %+v, want one by %s", creates, unitGhost)
	}
	req := creates[0].Content
	if req["is_direct"] != true || req["preset"] != "trusted_private_chat" {
		t.Errorf("room is not a trusted private DM: %v", req)
	}
	if inv, _ := req["invite"].([]any); len(inv) != 1 || inv[0] != string(unitUser) {
		t.Errorf("invite = %v, want just the user", req["invite"])
	}
	var bridgeKey string
	for _, st := range req["initial_state"].([]any) {
		s := st.(map[string]any)
		if s["type"] == event.StateBridge.Type {
			bridgeKey, _ = s["state_key"].(string)
			if field(s, "content", "channel", "id") != "bob" || field(s, "content", "channel", "fi.mau.receiver") != unitLoginID {
				t.Errorf("m.bridge content = %v", s["content"])
			}
		}
	}
	if bridgeKey != "testnet://bob" {
		t.Errorf("m.bridge state key = %q, want testnet://bob", bridgeKey)
	}

	p := u.portal(t)
	if p == nil || p.RoomID == "" || !p.UserJoined || !p.InDirect {
		t.Fatalf("portal = %+v, want a room the user joined and that is in m.direct", p)
	}
	if got := u.hs.Membership(p.RoomID, unitUser); got != event.MembershipJoin {
		t.Errorf("user's membership = %q, want join by the double puppet", got)
	}
	direct := u.direct(t)
	if rooms := direct[string(unitGhost)]; len(rooms) != 1 || rooms[0] != p.RoomID {
		t.Errorf("m.direct[%s] = %v, want [%s]", unitGhost, rooms, p.RoomID)
	}
	if rooms := direct["@carol:x"]; len(rooms) != 1 || rooms[0] != "!c:x" {
		t.Errorf("m.direct lost the user's other entry: %v", direct)
	}

	sends := u.sends()
	if len(sends) != 1 || sends[0].User != unitGhost || sends[0].RoomID != p.RoomID || sends[0].Content["body"] != "hello" {
		t.Fatalf("sends = %+v, want hello from the ghost into the portal", sends)
	}
	ev := fromBob("m1", "hello")
	ev.Login, ev.Chat = unitLoginID, &connector.Chat{ID: "bob"}
	if want := remoteTxnID(ev, 0); sends[0].TxnID != want {
		t.Errorf("txn = %q, want the deterministic %q", sends[0].TxnID, want)
	}

	// The portal is complete: the next message is one send and nothing else.
	u.hs.Reset()
	u.remote(t, fromBob("m2", "again"))
	calls := u.hs.Calls()
	if len(calls) != 1 || calls[0].Method != "SendMessageEvent" {
		t.Errorf("second message made %d calls (%+v), want only the send", len(calls), calls)
	}

	// A replay of a bridged message is not posted twice.
	u.hs.Reset()
	u.remote(t, fromBob("m1", "hello"))
	if calls := u.hs.Calls(); len(calls) != 0 {
		t.Errorf("replayed message made calls: %+v", calls)
	}
}

// What a remote message becomes on Matrix.
func TestUnitRemoteMessageContent(t *testing.T) {
	var pngBuf bytes.Buffer
	if err := png.Encode(&pngBuf, image.NewRGBA(image.Rect(0, 0, 2, 3))); err != nil {
		t.Fatal(err)
	}
	pngData := pngBuf.Bytes()
	long := strings.Repeat("word ", 10_000) // 50 KB: over one event, under eight parts
	huge := strings.Repeat("x", 9*maxPartBytes)
	cases := []struct {
		name  string
		ev    *connector.Event
		check func(t *testing.T, u *unit, sends []map[string]any)
	}{{
		name: "plain text",
		ev:   &connector.Event{Text: "hi <b>there</b>"},
		check: func(t *testing.T, u *unit, sends []map[string]any) {
			if len(sends) != 1 || sends[0]["body"] != "hi <b>there</b>" || sends[0]["format"] != nil || sends[0]["msgtype"] != "m.text" {
				t.Errorf("sends = %v, want the text as it is, unformatted", sends)
			}
		},
	}, {
		name: "HTML with nothing left after sanitising still says something",
		ev:   &connector.Event{HTML: `<img src="https://example.org/cat.png">`},
		check: func(t *testing.T, u *unit, sends []map[string]any) {
			if len(sends) != 1 || sends[0]["body"] != emptyBody {
				t.Errorf("sends = %v, want one with the stand-in body", sends)
			}
		},
	}, {
		name: "HTML is sanitised and gives the plain body",
		ev:   &connector.Event{HTML: `<b>bold</b><script>alert(1)</script>`},
		check: func(t *testing.T, u *unit, sends []map[string]any) {
			if len(sends) != 1 {
				t.Fatalf("sends = %v", sends)
			}
			fb, _ := sends[0]["formatted_body"].(string)
			if sends[0]["format"] != "org.matrix.custom.html" || !strings.Contains(fb, "<b>bold</b>") || strings.Contains(fb, "script") {
				t.Errorf("formatted_body = %q, want the bold kept and the script gone", fb)
			}
			if body, _ := sends[0]["body"].(string); !strings.Contains(body, "bold") || strings.Contains(body, "<") {
				t.Errorf("body = %q, want plain text derived from the HTML", body)
			}
		},
	}, {
		name: "long text is split into parts in order",
		ev:   &connector.Event{Text: long},
		check: func(t *testing.T, u *unit, sends []map[string]any) {
			if len(sends) < 2 {
				t.Fatalf("%d sends, want the text split", len(sends))
			}
			var joined strings.Builder
			for _, s := range sends {
				body, _ := s["body"].(string)
				if len(body) > maxPartBytes {
					t.Errorf("part of %d bytes, over %d", len(body), maxPartBytes)
				}
				joined.WriteString(body)
			}
			if joined.String() != long {
				t.Error("the parts do not add up to the text")
			}
			msgs, _ := u.db.Message.GetParts(context.Background(), database.PortalKey{LoginID: unitLoginID, ChatID: "bob"}, "m1")
			if len(msgs) != len(sends) {
				t.Errorf("%d parts mapped, want %d", len(msgs), len(sends))
			}
		},
	}, {
		name: "a text too long for eight parts goes as a file after a preview",
		ev:   &connector.Event{Text: huge},
		check: func(t *testing.T, u *unit, sends []map[string]any) {
			if len(sends) != 2 || sends[1]["msgtype"] != "m.file" {
				t.Fatalf("sends = %d (%v), want a preview and a file", len(sends), sends[len(sends)-1]["msgtype"])
			}
			data, ok := u.hs.Media(sends[1]["url"].(string))
			if !ok || string(data) != huge {
				t.Errorf("the uploaded file does not hold the text (%d bytes)", len(data))
			}
		},
	}, {
		name: "an attachment is uploaded and sent as its type",
		ev:   &connector.Event{Text: "look", Attachments: []connector.Attachment{{Name: "a.png", MimeType: "image/png", Data: pngData}}},
		check: func(t *testing.T, u *unit, sends []map[string]any) {
			if len(sends) != 2 || sends[0]["body"] != "look" || sends[1]["msgtype"] != "m.image" {
				t.Fatalf("sends = %v, want the text then the image", sends)
			}
			img := sends[1]
			if data, ok := u.hs.Media(img["url"].(string)); !ok || string(data) != string(pngData) {
				t.Error("the image event does not point at the uploaded bytes")
			}
			if field(img, "info", "w") != float64(2) || field(img, "info", "h") != float64(3) || field(img, "info", "mimetype") != "image/png" {
				t.Errorf("image info = %v, want 2x3 image/png", img["info"])
			}
		},
	}, {
		name: "an attachment over the limit becomes a notice",
		ev:   &connector.Event{Attachments: []connector.Attachment{{Name: "big.bin", Size: 1 << 40}}},
		check: func(t *testing.T, u *unit, sends []map[string]any) {
			if len(sends) != 1 || sends[0]["msgtype"] != "m.notice" || !strings.Contains(sends[0]["body"].(string), "big.bin") {
				t.Errorf("sends = %v, want a notice naming the file", sends)
			}
			if len(u.hs.Calls("UploadMedia")) != 0 {
				t.Error("uploaded a file over the limit")
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnit(t, false)
			tc.ev.Kind, tc.ev.ID, tc.ev.Sender = connector.KindMessage, "m1", &connector.Sender{ID: "bob"}
			u.remote(t, tc.ev)
			var contents []map[string]any
			for _, c := range u.sends() {
				contents = append(contents, c.Content)
			}
			tc.check(t, u, contents)
		})
	}
}

// A reply points at the mapped event; the user's own message from another
// device, without a double puppet, is posted by the ghost and labelled.
func TestUnitReplyAndOwnMessage(t *testing.T) {
	u := newUnit(t, false)
	u.remote(t, fromBob("m1", "question"))
	first := u.sends()[0].EventID
	reply := fromBob("m2", "answer")
	reply.ReplyTo = "m1"
	u.remote(t, reply)
	sends := u.sends()
	if got := field(sends[1].Content, "m.relates_to", "m.in_reply_to", "event_id"); got != string(first) {
		t.Errorf("reply points at %v, want %s", got, first)
	}
	own := &connector.Event{Kind: connector.KindMessage, ID: "m3", Text: "mine", Sender: &connector.Sender{ID: unitLoginID, IsMe: true}}
	u.remote(t, own)
	sends = u.sends()
	last := sends[len(sends)-1]
	if last.User != unitGhost || !strings.HasPrefix(last.Content["body"].(string), "You (from another device): ") {
		t.Errorf("own message = %+v, want it posted by the ghost and labelled", last)
	}
}

// A message that carries the txn of a command the bridge sent is the user's
// own Matrix message coming back: it is mapped to that event, not posted.
func TestUnitEchoIsMappedNotPosted(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	err := u.db.PendingCm.Insert(ctx, &database.PendingCommand{
		Txn: "$mine", ConnectorID: unitConnID, PortalKey: p.PortalKey, RoomID: p.RoomID, Op: connector.OpSendMessage, Data: []byte("{}"),
	})
	if err != nil {
		t.Fatal(err)
	}
	u.hs.Reset()
	u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "r9", Text: "mine", Txn: "$mine",
		Sender: &connector.Sender{ID: unitLoginID, IsMe: true}})
	if calls := u.hs.Calls(); len(calls) != 0 {
		t.Fatalf("the echo made Matrix calls: %+v", calls)
	}
	msg, err := u.db.Message.GetPart(ctx, p.PortalKey, "r9", 0)
	if err != nil || msg == nil || msg.MXID != id.EventID("$mine") {
		t.Fatalf("echo mapping = %+v, %v; want r9 mapped to $mine", msg, err)
	}
	// An echo of a message mapped already is dropped the same way.
	u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "r10", Text: "mine", Txn: "$mine",
		Sender: &connector.Sender{ID: unitLoginID, IsMe: true}})
	if calls := u.hs.Calls(); len(calls) != 0 {
		t.Fatalf("the second echo made Matrix calls: %+v", calls)
	}
}

// TestUnitMessageFromStrangerIsSkipped: a message in bob's DM whose sender
// is neither bob nor the user would be posted by bob's ghost as bob's; it
// is skipped (and counts as handled), in an existing DM (also when it names
// the stranger as chat.with) and in a chat with no portal yet, which gets
// none.
func TestUnitMessageFromStrangerIsSkipped(t *testing.T) {
	u, _ := newUnitPortal(t)
	before := len(u.sends())
	ev := fromBob("m2", "I am bob, honest")
	ev.Sender = &connector.Sender{ID: "mallory"}
	u.remote(t, ev)
	// Naming the stranger as chat.with too does not make bob's DM theirs.
	forged := fromBob("m3", "still bob, promise")
	forged.Sender = &connector.Sender{ID: "mallory"}
	forged.Chat = &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "mallory"}
	u.remote(t, forged)
	fresh := fromBob("c1", "hello from nobody")
	fresh.Sender = &connector.Sender{ID: "mallory"}
	fresh.Chat = &connector.Chat{ID: "carol", Type: connector.ChatTypeDM, With: "carol"}
	u.remote(t, fresh)
	if n := len(u.sends()) - before; n != 0 {
		t.Errorf("%d messages posted for a sender who is not the contact, want none", n)
	}
	if p, err := u.db.Portal.Get(context.Background(), database.PortalKey{LoginID: unitLoginID, ChatID: "carol"}); err != nil || p != nil {
		t.Errorf("portal for carol's chat = %+v, %v; want none made", p, err)
	}
}
