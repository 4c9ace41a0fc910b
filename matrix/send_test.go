package matrix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// wireLog is a homeserver that records each request as it arrived on the
// wire (method, request URI, headers, body) and answers with the status
// and body it is given.
type wireLog struct {
	mu     sync.Mutex
	seen   []string
	status int
	answer string
}

func (l *wireLog) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var headers []string
	for k, v := range req.Header {
		if k != "Accept-Encoding" { // the transport's own, alike for both
			headers = append(headers, k+": "+strings.Join(v, ","))
		}
	}
	sort.Strings(headers)
	l.mu.Lock()
	l.seen = append(l.seen, fmt.Sprintf("%s %s len=%d %s\n%s", req.Method, req.RequestURI, req.ContentLength, strings.Join(headers, "; "), body))
	status, answer := l.status, l.answer
	l.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, answer)
}

func (l *wireLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := l.seen
	l.seen = nil
	return seen
}

// outcome is what a caller can tell of a send's result.
func outcome(resp *mautrix.RespSendEvent, err error) string {
	if err != nil {
		var httpErr mautrix.HTTPError
		status := 0
		if errors.As(err, &httpErr) && httpErr.Response != nil {
			status = httpErr.Response.StatusCode
		}
		return fmt.Sprintf("error %q status=%d forbidden=%v never=%v refusal=%v", err.Error(), status,
			errors.Is(err, mautrix.MForbidden), errors.Is(err, mautrix.ErrResponseTooLong), IsRefusal(err))
	}
	if resp == nil {
		return "nil response"
	}
	return "event " + resp.EventID.String()
}

// TestSendPlainAsMautrix: sendPlain puts on the wire what mautrix's
// SendMessageEvent does (URL with its escaping and its user_id, ts and
// device_id parameters, headers, body) and hands back the same result or
// error, for answers good and bad; and it does take the send over in the
// usual case, a ghost's message into an unencrypted room.
func TestSendPlainAsMautrix(t *testing.T) {
	l := &wireLog{}
	hs := httptest.NewServer(l)
	defer hs.Close()
	as, err := mas.CreateFull(mas.CreateOpts{
		Registration: &mas.Registration{AppToken: "as-token", ServerToken: "hs", SenderLocalpart: "bot"}, HomeserverDomain: "x", HomeserverURL: hs.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	as.UserAgent = "dmbridge-test/1"
	ctx := mautrix.WithMaxRetries(context.Background(), 0)
	msg := &event.MessageEventContent{MsgType: event.MsgText, Body: "héllo <b> & \"quotes\""}
	answers := []struct {
		status int
		body   string
	}{
		{200, `{"event_id":"$ev:x"}`},
		{403, `{"errcode":"M_FORBIDDEN","error":"not in room"}`},
		{429, `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":10}`},
		{500, `internal error`},
		{200, `not json`},
		{200, `null`},
	}
	type variant struct {
		user     id.UserID
		room     id.RoomID
		evType   event.Type
		req      mautrix.ReqSendEvent
		asUser   bool
		deviceID id.DeviceID
	}
	variants := []variant{
		{user: "@dm_bob:x", room: "!room:x", evType: event.EventMessage, req: mautrix.ReqSendEvent{TransactionID: "dmb.1.0", Timestamp: 1700000000123}, asUser: true},
		{user: "@dm_b+o/b:x", room: "!a/b?c#d e:x", evType: event.EventReaction, req: mautrix.ReqSendEvent{TransactionID: "t/1 2?&=%"}, asUser: true},
		{user: "@dm_bob:x", room: "!room:x", evType: event.EventMessage, req: mautrix.ReqSendEvent{TransactionID: "t3"}, asUser: false},
		{user: "@dm_bob:x", room: "!room:x", evType: event.EventMessage, req: mautrix.ReqSendEvent{TransactionID: "t4", Timestamp: 5}, asUser: true, deviceID: "DEV/1"},
	}
	for _, a := range answers {
		l.status, l.answer = a.status, a.body
		for _, v := range variants {
			cli := as.NewMautrixClient(v.user)
			cli.SetAppServiceUserID = v.asUser
			if v.deviceID != "" {
				cli.DeviceID, cli.SetAppServiceDeviceID = v.deviceID, true
			}
			wantResp, wantErr := cli.SendMessageEvent(ctx, v.room, v.evType, msg, v.req)
			want := l.take()
			gotResp, sent, gotErr := sendPlain(ctx, cli, v.room, v.evType, msg, v.req, false)
			got := l.take()
			if !sent {
				t.Fatalf("%+v: sendPlain left the send to mautrix", v)
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("%+v, answer %d %s: sent\n%q\nmautrix sent\n%q", v, a.status, a.body, got, want)
			}
			if g, w := outcome(gotResp, gotErr), outcome(wantResp, wantErr); g != w {
				t.Errorf("%+v, answer %d %s: outcome\n%s\nmautrix's\n%s", v, a.status, a.body, g, w)
			}
		}
	}

	// Nobody listening: the same network error, which the in-doubt
	// handling reads as a send that never arrived.
	gone := httptest.NewServer(l)
	goneURL := gone.URL
	gone.Close()
	as2, err := mas.CreateFull(mas.CreateOpts{
		Registration: &mas.Registration{AppToken: "as-token", ServerToken: "hs", SenderLocalpart: "bot"}, HomeserverDomain: "x", HomeserverURL: goneURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	cli := as2.NewMautrixClient("@dm_bob:x")
	req := mautrix.ReqSendEvent{TransactionID: "t5"}
	wantResp, wantErr := cli.SendMessageEvent(ctx, "!room:x", event.EventMessage, msg, req)
	gotResp, sent, gotErr := sendPlain(ctx, cli, "!room:x", event.EventMessage, msg, req, false)
	if !sent || gotErr == nil || outcome(gotResp, gotErr) != outcome(wantResp, wantErr) {
		t.Errorf("unreachable homeserver: sent=%v %s, mautrix %s", sent, outcome(gotResp, gotErr), outcome(wantResp, wantErr))
	}
}

// TestSendPlainLeavesTheRestToMautrix: a send mautrix would retry, encrypt,
// or address differently is not taken over.
func TestSendPlainLeavesTheRestToMautrix(t *testing.T) {
	as, err := mas.CreateFull(mas.CreateOpts{
		Registration: &mas.Registration{AppToken: "as", ServerToken: "hs", SenderLocalpart: "bot"}, HomeserverDomain: "x", HomeserverURL: "http://127.0.0.1:1/prefix",
	})
	if err != nil {
		t.Fatal(err)
	}
	once := mautrix.WithMaxRetries(context.Background(), 0)
	req := mautrix.ReqSendEvent{TransactionID: "t"}
	if _, sent, _ := sendPlain(once, as.NewMautrixClient("@dm_bob:x"), "!r:x", event.EventMessage, struct{}{}, req, false); sent {
		t.Error("took over a send to a homeserver URL with a path")
	}
	as = testAppService(t)
	cli := as.NewMautrixClient("@dm_bob:x")
	if _, sent, _ := sendPlain(mautrix.WithMaxRetries(context.Background(), 2), cli, "!r:x", event.EventMessage, struct{}{}, req, false); sent {
		t.Error("took over a send mautrix would retry")
	}
	if _, sent, _ := sendPlain(once, cli, "!r:x", event.EventMessage, struct{}{}, mautrix.ReqSendEvent{}, false); sent {
		t.Error("took over a send without a transaction id")
	}
	ctx := context.Background()
	if err = as.StateStore.SetEncryptionEvent(ctx, "!enc:x", &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}); err != nil {
		t.Fatal(err)
	}
	cli.Crypto = &fakeCrypto{}
	if _, sent, _ := sendPlain(once, cli, "!enc:x", event.EventMessage, struct{}{}, req, false); sent {
		t.Error("took over a send mautrix would encrypt")
	}
}
