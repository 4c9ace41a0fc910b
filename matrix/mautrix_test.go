package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// recorder is a homeserver that answers each path from a table and records
// the requests.
type recorder struct {
	mu      sync.Mutex
	reqs    []string
	bodies  []string
	answers map[string]func(w http.ResponseWriter)
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path)
	r.bodies = append(r.bodies, string(body))
	r.mu.Unlock()
	if answer, ok := r.answers[req.URL.Path]; ok {
		answer(w)
		return
	}
	w.WriteHeader(http.StatusNotFound)
	_, _ = io.WriteString(w, `{"errcode":"M_UNRECOGNIZED","error":"no such endpoint"}`)
}

func newTestIntents(t *testing.T, r *recorder) Intents {
	t.Helper()
	return NewIntents(newTestAppService(t, r))
}

// newTestAppService is an appservice whose homeserver is r.
func newTestAppService(t *testing.T, r *recorder) *mas.AppService {
	t.Helper()
	hs := httptest.NewServer(r)
	t.Cleanup(hs.Close)
	as, err := mas.CreateFull(mas.CreateOpts{
		Registration: &mas.Registration{AppToken: "as", ServerToken: "hs", SenderLocalpart: "bot"}, HomeserverDomain: "x", HomeserverURL: hs.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// A server that does not route authenticated media gets the legacy
// download; one that routes it gets one request.
func TestDownloadFallsBackToLegacyMedia(t *testing.T) {
	r := &recorder{answers: map[string]func(http.ResponseWriter){
		"/_matrix/media/v3/download/x/abc": func(w http.ResponseWriter) { _, _ = io.WriteString(w, "legacy bytes") },
	}}
	bot := newTestIntents(t, r).Bot()
	resp, err := bot.Download(context.Background(), id.ContentURI{Homeserver: "x", FileID: "abc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(data) != "legacy bytes" {
		t.Errorf("body = %q", data)
	}
	want := []string{"GET /_matrix/client/v1/media/download/x/abc", "GET /_matrix/media/v3/download/x/abc"}
	if strings.Join(r.reqs, "|") != strings.Join(want, "|") {
		t.Errorf("requests = %v, want %v", r.reqs, want)
	}
}

// Presence always carries status_msg, so that a cleared status clears.
func TestSetPresenceSendsEmptyStatus(t *testing.T) {
	r := &recorder{answers: map[string]func(http.ResponseWriter){
		"/_matrix/client/v3/presence/@dm_bob:x/status": func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{}`) },
	}}
	ghost := newTestIntents(t, r).Ghost("@dm_bob:x", true)
	if err := ghost.SetPresence(context.Background(), "online", ""); err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if len(r.bodies) != 1 || json.Unmarshal([]byte(r.bodies[0]), &body) != nil {
		t.Fatalf("requests = %v %v", r.reqs, r.bodies)
	}
	if msg, ok := body["status_msg"]; !ok || msg != "" || body["presence"] != "online" {
		t.Errorf("body = %s, want presence online and an explicit empty status_msg", r.bodies[0])
	}
}

// EventsAfter keeps the events as they came.
func TestEventsAfterKeepsRawEvents(t *testing.T) {
	r := &recorder{answers: map[string]func(http.ResponseWriter){
		"/_matrix/client/v3/rooms/!r:x/context/$inv": func(w http.ResponseWriter) {
			_, _ = io.WriteString(w, `{"events_after":[{"event_id":"$1","type":"m.room.message","x_unknown":1}]}`)
		},
	}}
	ghost := newTestIntents(t, r).Ghost("@dm_bob:x", true)
	events, err := ghost.EventsAfter(context.Background(), "!r:x", "$inv", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || !strings.Contains(string(events[0]), `"x_unknown":1`) {
		t.Errorf("events = %s", events)
	}
}

// A ghost known to be registered costs no registration request before its
// first call, unlike one not known; a double puppet acts as its user.
func TestGhostAndDoublePuppet(t *testing.T) {
	whoami := func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"user_id":"@dm_bob:x"}`) }
	r := &recorder{answers: map[string]func(http.ResponseWriter){
		"/_matrix/client/v3/account/whoami": whoami,
		"/_matrix/client/v3/register":       func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{}`) },
	}}
	intents := newTestIntents(t, r)
	registers := func() int {
		n := 0
		for _, req := range r.reqs {
			if strings.HasSuffix(req, "/register") {
				n++
			}
		}
		return n
	}
	if _, err := intents.Ghost("@dm_bob:x", true).Whoami(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := registers(); n != 0 {
		t.Errorf("a ghost known to be registered registered again: %v", r.reqs)
	}
	if _, err := intents.Ghost("@dm_carol:x", false).Whoami(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := registers(); n != 1 {
		t.Errorf("a ghost not known to be registered was not registered first: %v", r.reqs)
	}
	dp, err := intents.DoublePuppet("@alice:x", "token")
	if err != nil {
		t.Fatal(err)
	}
	if dp.UserID() != "@alice:x" || !dp.IsDoublePuppet() || intents.Ghost("@dm_bob:x", false).IsDoublePuppet() {
		t.Errorf("double puppet = %s (%v)", dp.UserID(), dp.IsDoublePuppet())
	}
}

// fakeCrypto encrypts by wrapping the content's JSON, and records it.
type fakeCrypto struct {
	mautrix.CryptoHelper
	plain []string
}

func (f *fakeCrypto) Encrypt(_ context.Context, _ id.RoomID, _ event.Type, content any) (*event.EncryptedEventContent, error) {
	data, err := json.Marshal(content)
	f.plain = append(f.plain, string(data))
	return &event.EncryptedEventContent{Algorithm: id.AlgorithmMegolmV1, MegolmCiphertext: []byte("sealed")}, err
}

// TestDoublePuppetEncrypts: with the double-puppet hook set, a double
// puppet's message and reaction into an encrypted room go out as
// m.room.encrypted through the hook's helper, with the double-puppet marker
// inside and on the encrypted content; into a plain room they stay plain.
func TestDoublePuppetEncrypts(t *testing.T) {
	sent := func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"event_id":"$e"}`) }
	r := &recorder{answers: map[string]func(http.ResponseWriter){
		"/_matrix/client/v3/rooms/!enc:x/send/m.room.encrypted/t1": sent,
		"/_matrix/client/v3/rooms/!enc:x/send/m.room.encrypted/t2": sent,
		"/_matrix/client/v3/rooms/!plain:x/send/m.room.message/t3": sent,
	}}
	as := newTestAppService(t, r)
	as.DoublePuppetValue = "dmbridge"
	ctx := context.Background()
	for _, room := range []id.RoomID{"!enc:x", "!plain:x"} {
		if err := as.StateStore.SetMembership(ctx, room, "@alice:x", event.MembershipJoin); err != nil {
			t.Fatal(err)
		}
	}
	if err := as.StateStore.SetEncryptionEvent(ctx, "!enc:x", &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}); err != nil {
		t.Fatal(err)
	}
	intents := NewIntents(as)
	fc := &fakeCrypto{}
	intents.SetDoublePuppetHook(func(ia *mas.IntentAPI) { ia.Client.Crypto = fc })
	dp, err := intents.DoublePuppet("@alice:x", "token")
	if err != nil {
		t.Fatal(err)
	}
	msg := &event.MessageEventContent{MsgType: event.MsgText, Body: "from my phone"}
	if _, err = dp.SendMessageEvent(ctx, "!enc:x", event.EventMessage, msg, mautrix.ReqSendEvent{TransactionID: "t1"}); err != nil {
		t.Fatal(err)
	}
	react := &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: "$m", Key: "👍"}}
	if _, err = dp.SendMessageEvent(ctx, "!enc:x", event.EventReaction, react, mautrix.ReqSendEvent{TransactionID: "t2"}); err != nil {
		t.Fatal(err)
	}
	if _, err = dp.SendMessageEvent(ctx, "!plain:x", event.EventMessage, msg, mautrix.ReqSendEvent{TransactionID: "t3"}); err != nil {
		t.Fatal(err)
	}
	if len(fc.plain) != 2 || !strings.Contains(fc.plain[0], `"from my phone"`) || !strings.Contains(fc.plain[1], `"👍"`) {
		t.Fatalf("encrypted plaintexts = %q, want the message and the reaction", fc.plain)
	}
	for i, p := range fc.plain {
		if !strings.Contains(p, `"fi.mau.double_puppet_source":"dmbridge"`) {
			t.Errorf("plaintext %d lacks the double-puppet marker: %s", i, p)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) != 3 || !strings.Contains(r.bodies[0], `"fi.mau.double_puppet_source":"dmbridge"`) ||
		!strings.Contains(r.bodies[0], `"ciphertext"`) || !strings.Contains(r.bodies[2], `"from my phone"`) {
		t.Fatalf("requests %v with bodies %q: want two encrypted sends with the marker outside, then a plain one", r.reqs, r.bodies)
	}
}

// TestIsGone: a leave or decline refused because the membership is already
// gone counts as done, whether the homeserver says so with a code or only
// with a 403/404 status; a failure to reach it does not.
func TestIsGone(t *testing.T) {
	status := func(code int) error {
		return mautrix.HTTPError{Response: &http.Response{StatusCode: code}}
	}
	for _, tc := range []struct {
		err  error
		gone bool
	}{
		{status(http.StatusForbidden), true},
		{status(http.StatusNotFound), true},
		{mautrix.MNotFound, true},
		{mautrix.MForbidden, true},
		{status(http.StatusTooManyRequests), false},
		{status(http.StatusBadGateway), false},
		{mautrix.HTTPError{WrappedError: io.ErrUnexpectedEOF}, false},
	} {
		if got := IsGone(tc.err); got != tc.gone {
			t.Errorf("IsGone(%v) = %v, want %v", tc.err, got, tc.gone)
		}
	}
	if !IsNotFound(mautrix.MNotFound) || IsNotFound(mautrix.MForbidden) {
		t.Error("IsNotFound does not tell M_NOT_FOUND from M_FORBIDDEN")
	}
	if !IsForbidden(status(http.StatusForbidden)) || !IsForbidden(mautrix.MForbidden) ||
		IsForbidden(status(http.StatusNotFound)) || IsForbidden(mautrix.MNotFound) {
		t.Error("IsForbidden does not tell a 403 from a 404")
	}
}

// TestIsRefusal: at start-up a 4xx answer ends the wait for the homeserver
// (it refuses the appservice), while no answer, a 5xx, a timeout or a rate
// limit is waited out.
func TestIsRefusal(t *testing.T) {
	status := func(code int) error {
		return fmt.Errorf("failed to ensure registered: %w", mautrix.HTTPError{Response: &http.Response{StatusCode: code}})
	}
	for _, tc := range []struct {
		err     error
		refusal bool
	}{
		{status(http.StatusUnauthorized), true},
		{status(http.StatusForbidden), true},
		{status(http.StatusNotFound), true},
		{status(http.StatusRequestTimeout), false},
		{status(http.StatusTooManyRequests), false},
		{status(http.StatusBadGateway), false},
		{status(http.StatusServiceUnavailable), false},
		{mautrix.HTTPError{WrappedError: io.ErrUnexpectedEOF}, false},
		{errors.New("dial tcp 127.0.0.1:8008: connect: connection refused"), false},
	} {
		if got := IsRefusal(tc.err); got != tc.refusal {
			t.Errorf("IsRefusal(%v) = %v, want %v", tc.err, got, tc.refusal)
		}
	}
}
