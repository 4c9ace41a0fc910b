package bridge_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/event"
)

// TestXMPPLinkToInternalAddress: bob, on real Prosody, shares out-of-band
// links to a server on the bridge's loopback and to the cloud metadata
// address. With no allowlist the bridge fetches neither: the loopback
// server sees no request, alice sees notices that do not repeat the links,
// and bob's next message arrives as usual.
func TestXMPPLinkToInternalAddress(t *testing.T) {
	var hits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("internal secret"))
	}))
	t.Cleanup(internal.Close)
	x := newXMPPStackWith(t, stackOptions{})
	room, _, _ := x.bobOpens("hello")

	x.bob.SendFile(t, x.login, internal.URL+"/secret.txt")
	x.bob.SendFile(t, x.login, "http://169.254.169.254/latest/meta-data/iam.txt")
	x.bobSays("still here")
	x.waitMessage(room, "still here")

	var notices []string
	for _, evt := range x.messagesIn(room) {
		msg := evt.Content.AsMessage()
		if msg.URL != "" {
			t.Errorf("a file was posted: %s", evt.Content.VeryRaw)
		}
		if msg.MsgType == event.MsgNotice {
			notices = append(notices, msg.Body)
		}
	}
	if len(notices) != 2 {
		t.Fatalf("notices %q, want one per link", notices)
	}
	for _, n := range notices {
		for _, leak := range []string{"127.0.0.1", internal.Listener.Addr().String(), "169.254", "meta-data", "/secret"} {
			if strings.Contains(n, leak) {
				t.Errorf("notice %q repeats the link (%s)", n, leak)
			}
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the internal server got %d requests", n)
	}
}
