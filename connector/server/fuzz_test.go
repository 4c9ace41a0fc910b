package server_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// frameSeeds are frames a connector really sends, and near misses of them,
// so the fuzzer starts from the shapes the bridge has to tell apart.
var frameSeeds = []string{
	`{"type":"hello","data":{"protocol":[1],"connector":{"id":"x","name":"X","version":"1"},"network":{"id":"n","name":"N"},"capabilities":{"formats":["plain"]},"logins":[{"id":"a@n","matrix_user":"@a:hs","state":"connected"}]}}`,
	`{"type":"event","seq":1,"data":{"kind":"message","login":"a@n","ts":1,"chat":{"id":"b","type":"dm","with":"b"},"sender":{"id":"b"},"id":"m1","text":"hi","html":"<b>hi</b>"}}`,
	`{"type":"event","seq":2,"data":{"kind":"message","login":"a@n","chat":{"id":"b","type":"dm","with":"b"},"sender":{"id":"b","is_me":true},"id":"m2","attachments":[{"name":"f","mimetype":"text/plain","size":2,"data":"aGk="}]}}`,
	`{"type":"event","seq":3,"data":{"kind":"edit","login":"a@n","chat":{"id":"b","type":"dm","with":"b"},"sender":{"id":"b"},"id":"e1","target":"m1","text":"hey"}}`,
	`{"type":"event","seq":4,"data":{"kind":"delete","login":"a@n","chat":{"id":"b","type":"dm","with":"b"},"sender":{"id":"b"},"id":"d1","target":"m1"}}`,
	`{"type":"event","seq":5,"data":{"kind":"reaction","login":"a@n","chat":{"id":"b","type":"dm","with":"b"},"sender":{"id":"b"},"id":"r1","target":"m1","key":"👍"}}`,
	`{"type":"event","seq":6,"data":{"kind":"read_receipt","login":"a@n","chat":{"id":"b","type":"dm","with":"b"},"sender":{"id":"b"},"up_to":"m1"}}`,
	`{"type":"event","seq":7,"data":{"kind":"contact","login":"a@n","contact":{"id":"b","name":"Bob","avatar":{"id":"v1","url":"https://example.org/a.png"}}}}`,
	`{"type":"event","seq":8,"data":{"kind":"login","login":"a@n","state":"bad_credentials","message":"nope"}}`,
	`{"type":"event","seq":9,"data":{"kind":"chat_deleted","login":"a@n","chat":{"id":"b","type":"dm","with":"b"}}}`,
	`{"type":"ephemeral","data":{"kind":"typing","login":"a@n","chat":{"id":"b","type":"dm","with":"b"},"sender":{"id":"b"},"typing":true,"timeout_ms":5000}}`,
	`{"type":"ephemeral","data":{"kind":"presence","login":"a@n","contact":"b","presence":"online"}}`,
	`{"type":"res","id":"c1","data":{"id":"net-1","ts":5}}`,
	`{"type":"err","id":"c1","error":{"code":"M_NETWORK","message":"down","retryable":true}}`,
	`{"type":"event","seq":1,"data":{"kind":"message","login":"a@n","chat":{"id":"b","type":"group"},"sender":{"id":"b"},"id":"m1","text":"x"}}`,
	`{"type":"event","seq":"1","id":7}`,
	`{"type":"event","seq":1.5}`,
	`{"type":"hello","data":{"protocol":[2],"connector":{"id":"` + strings.Repeat("é", 80) + `"},"network":{"id":"n"}}}`,
	`{"type":"` + strings.Repeat("ü", 70) + `"}`,
	`{"type":"event","seq":1,"data":{"kind":"message","login":"a@n","chat":null,"sender":{"id":"b"},"id":"m1","text":"x"}}`,
	`[1,2,3]`, `null`, `"hello"`, `{"type":null,"data":null,"error":null}`, "\xff\xfe{}",
}

// FuzzFrameDecode feeds arbitrary bytes through the bridge's frame decoding
// and validation. Properties: a frame that decodes re-encodes to a fixed
// point; an event or ephemeral that validates carries every field the
// handlers dereference, and still validates, unchanged, after a round trip
// on the wire; a refusal is a ValidationError naming a field.
func FuzzFrameDecode(f *testing.F) {
	for _, s := range frameSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		refs := connws.SalvageRefs(msg)
		var fr connector.Frame
		if err := json.Unmarshal(msg, &fr); err != nil {
			return
		}
		_ = refs
		once, err := json.Marshal(&fr)
		if err != nil {
			t.Fatalf("decoded frame does not encode: %v", err)
		}
		var again connector.Frame
		if err = json.Unmarshal(once, &again); err != nil {
			t.Fatalf("re-encoded frame %s does not decode: %v", once, err)
		}
		twice, _ := json.Marshal(&again)
		if string(once) != string(twice) {
			t.Fatalf("frame encoding is not stable:\n%s\n%s", once, twice)
		}
		if again.Type != fr.Type || again.Seq != fr.Seq || again.ID != fr.ID || again.Op != fr.Op {
			t.Fatalf("frame changed on the way: %+v vs %+v", fr, again)
		}
		// What err frame the bridge would answer with must decode on the
		// connector side.
		var answer connector.Frame
		if err = json.Unmarshal(connws.ErrFrame(fr.ID, fr.Seq, &connector.Error{Code: connector.ErrBadFrame, Message: string(msg)}), &answer); err != nil || answer.ID != fr.ID || answer.Seq != fr.Seq {
			t.Fatalf("err frame for %q does not decode back: %+v, %v", msg, answer, err)
		}
		if len(fr.Data) == 0 {
			return
		}
		switch fr.Type {
		case connector.TypeEvent:
			checkEventRoundTrip(t, fr)
		case connector.TypeEphemeral:
			checkEphemeralRoundTrip(t, fr)
		}
	})
}

func checkEventRoundTrip(t *testing.T, fr connector.Frame) {
	var ev connector.Event
	if json.Unmarshal(fr.Data, &ev) != nil {
		return
	}
	if err := ev.Validate(); err != nil {
		var ve *connector.ValidationError
		if !errors.As(err, &ve) || ve.Field == "" || ve.Reason == "" {
			t.Fatalf("refusal %v does not name a field", err)
		}
		return
	}
	requireEventFields(t, &ev)
	b, err := connws.EncodeFrame(connector.Frame{Type: connector.TypeEvent, Seq: fr.Seq}, &ev)
	if err != nil {
		t.Fatalf("valid event does not encode: %v", err)
	}
	var back connector.Frame
	var ev2 connector.Event
	if err = json.Unmarshal(b, &back); err != nil {
		t.Fatalf("encoded event frame does not decode: %v", err)
	}
	if err = json.Unmarshal(back.Data, &ev2); err != nil {
		t.Fatalf("encoded event does not decode: %v", err)
	}
	if err = ev2.Validate(); err != nil {
		t.Fatalf("valid event is refused after a round trip: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(normEvent(ev), normEvent(ev2)) {
		t.Fatalf("event changed on the way:\n%+v\n%+v", ev, ev2)
	}
}

// normEvent clears the difference between a nil and an empty attachment
// data slice, which the wire cannot carry.
func normEvent(ev connector.Event) connector.Event {
	ev.Attachments = append([]connector.Attachment(nil), ev.Attachments...)
	for i := range ev.Attachments {
		if len(ev.Attachments[i].Data) == 0 {
			ev.Attachments[i].Data = nil
		}
	}
	if len(ev.Attachments) == 0 {
		ev.Attachments = nil
	}
	return ev
}

// requireEventFields checks what the bridge's handlers take for granted
// once Validate said yes.
func requireEventFields(t *testing.T, ev *connector.Event) {
	if ev.Login == "" {
		t.Fatalf("valid %s without login", ev.Kind)
	}
	if connector.IsChatScoped(ev.Kind) && (ev.Chat == nil || ev.Chat.ID == "" || ev.Chat.Type == "" ||
		(ev.Chat.Type == connector.ChatTypeDM && ev.Chat.With == "")) {
		t.Fatalf("valid %s with chat %+v", ev.Kind, ev.Chat)
	}
	switch ev.Kind {
	case connector.KindMessage, connector.KindEdit, connector.KindDelete, connector.KindReaction, connector.KindReactionRemove, connector.KindReadReceipt:
		if ev.Sender == nil || ev.Sender.ID == "" {
			t.Fatalf("valid %s without sender", ev.Kind)
		}
	case connector.KindContact:
		if ev.Contact == nil || ev.Contact.ID == "" || (ev.Contact.Avatar != nil && (ev.Contact.Avatar.ID == "" || ev.Contact.Avatar.URL == "")) {
			t.Fatalf("valid contact event with contact %+v", ev.Contact)
		}
	}
	for _, a := range ev.Attachments {
		if len(a.Data) > connector.MaxInlineAttachment || (a.URL == "") == (len(a.Data) == 0) {
			t.Fatalf("valid message with attachment url %q and %d bytes inline", a.URL, len(a.Data))
		}
	}
}

func checkEphemeralRoundTrip(t *testing.T, fr connector.Frame) {
	var e connector.Ephemeral
	if json.Unmarshal(fr.Data, &e) != nil || e.Validate() != nil {
		return
	}
	if e.Kind == connector.KindTyping && (e.Chat == nil || e.Chat.ID == "" || e.Sender == nil || e.Sender.ID == "" || e.TimeoutMS < 0) {
		t.Fatalf("valid typing %+v lacks chat or sender", e)
	}
	b, err := connws.EncodeFrame(connector.Frame{Type: connector.TypeEphemeral}, &e)
	if err != nil {
		t.Fatal(err)
	}
	var back connector.Frame
	var e2 connector.Ephemeral
	if json.Unmarshal(b, &back) != nil || json.Unmarshal(back.Data, &e2) != nil || e2.Validate() != nil || !reflect.DeepEqual(e, e2) {
		t.Fatalf("ephemeral changed or became invalid on the way: %+v vs %+v", e, e2)
	}
}

// FuzzParseHello checks the handshake's refusals: whatever the first frame,
// parseHello either accepts a hello with the fields the server uses, or
// refuses it with an error whose close frame a websocket peer can read
// (at most 125 bytes, valid UTF-8).
func FuzzParseHello(f *testing.F) {
	for _, s := range frameSeeds {
		f.Add([]byte(s), true)
	}
	f.Add([]byte("binary"), false)
	f.Fuzz(func(t *testing.T, msg []byte, text bool) {
		typ := websocket.BinaryMessage
		if text {
			typ = websocket.TextMessage
		}
		hello, _, perr := server.ParseHello(typ, msg)
		if perr == nil {
			if hello == nil || hello.Connector.ID == "" || hello.Network.ID == "" || len(hello.Protocol) == 0 {
				t.Fatalf("accepted hello %+v lacks what the server uses", hello)
			}
			for _, l := range hello.Logins {
				if l.ID == "" || l.MatrixUser == "" {
					t.Fatalf("accepted hello with login %+v", l)
				}
			}
			return
		}
		if perr.Code == "" || perr.Message == "" {
			t.Fatalf("refusal without code or message: %+v", perr)
		}
		checkCloseFrame(t, connws.CloseMessage(connector.CloseProtocolError, perr.Message))
	})
}

// checkCloseFrame reads a close payload the way gorilla's reader does on the
// other end: a reason that is not UTF-8 turns the close into a protocol error
// and the peer never learns the code.
func checkCloseFrame(t *testing.T, payload []byte) {
	t.Helper()
	if len(payload) > 125 {
		t.Fatalf("close payload of %d bytes, control frames allow 125", len(payload))
	}
	if !utf8.Valid(payload[2:]) {
		t.Fatalf("close reason %q is not valid UTF-8", payload[2:])
	}
}

// FuzzCloseMessage: any reason a valid UTF-8 string can carry fits a close
// frame that the peer can read.
func FuzzCloseMessage(f *testing.F) {
	f.Add("too many bad frames")
	f.Add(strings.Repeat("é", 70))
	f.Add(strings.Repeat("a", 122) + "€")
	f.Fuzz(func(t *testing.T, reason string) {
		if !utf8.ValidString(reason) {
			return
		}
		payload := connws.CloseMessage(connector.CloseProtocolError, reason)
		checkCloseFrame(t, payload)
		if got := string(payload[2:]); !strings.HasPrefix(reason, got) {
			t.Fatalf("close reason %q is not a prefix of %q", got, reason)
		}
	})
}

// TestRefusedHelloWithLongUnicodeClosesCleanly: the refusal of a hello
// quotes the frame's type; when that is long and not ASCII, the connector
// still gets close 4000, not a protocol error from a reason cut mid-rune.
// Found by FuzzParseHello.
func TestRefusedHelloWithLongUnicodeClosesCleanly(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	rc := h.Dial(t)
	if err := rc.WriteText([]byte(`{"type":"` + strings.Repeat("ü", 70) + `"}`)); err != nil {
		t.Fatal(err)
	}
	if f := connectortest.MustRead(t, rc); f.Type != connector.TypeErr || f.Error.Code != connector.ErrBadFrame {
		t.Fatalf("want err %s, got %+v", connector.ErrBadFrame, f)
	}
	connectortest.ExpectClose(t, rc, connector.CloseProtocolError)
}
