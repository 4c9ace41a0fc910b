package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
	"github.com/dmbridge/dmbridge/internal/httpcall"
	"github.com/dmbridge/dmbridge/internal/rawconn"
)

func TestMediaEndpoint(t *testing.T) {
	const ownToken = "token-of-connector-own-0123456789"
	h := connectortest.NewHarness(t, func(o *server.Options) {
		o.ConnectorTokens = map[string]string{"own": ownToken}
		o.Media = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("media:" + strings.TrimPrefix(r.URL.Path, connector.MediaPathPrefix)))
		})
	})
	get := func(url, token string) (int, string) {
		t.Helper()
		return httpcall.Do(t, http.MethodGet, url, token, "")
	}
	if _, ok := h.Srv.MediaURL("c", "hs.example", "abc"); ok {
		t.Error("a media URL for a connector that is not connected")
	}
	h.Connect(t, "c")
	// The welcome can arrive a moment before the server counts the
	// connection as live.
	connectortest.Eventually(t, "connector c live", func() bool { return h.Srv.Connected("c") })
	url, ok := h.Srv.MediaURL("c", "hs.example", "abc")
	if !ok || !strings.HasPrefix(url, h.HS.URL+connector.MediaPathPrefix+"hs.example/abc?") {
		t.Fatalf("MediaURL = %q, %v", url, ok)
	}
	if code, _ := get(url, ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}
	if code, _ := get(url, "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", code)
	}
	if code, body := get(url, connectortest.Token); code != http.StatusOK || body != "media:hs.example/abc" {
		t.Errorf("signed URL with token: %d %q", code, body)
	}
	// Anything the bridge did not hand out gets 403 and no bytes.
	expired := time.Now().Add(-time.Minute).Unix()
	forbidden := map[string]string{
		"unsigned":               h.HS.URL + connector.MediaPathPrefix + "hs.example/abc",
		"other media":            strings.Replace(url, "/abc?", "/abd?", 1),
		"other connector":        strings.Replace(url, "connector=c", "connector=d", 1),
		"bad signature":          url[:len(url)-2] + "AA",
		"own connector's id":     strings.Replace(url, "connector=c", "connector=own", 1),
		"expired":                fmt.Sprintf("%s%s?connector=c&expires=%d&sig=%s", h.HS.URL, connector.MediaPath("hs.example", "abc"), expired, h.Srv.MediaSignature("c", "hs.example", "abc", expired)),
		"no expiry":              strings.Replace(url, "expires=", "expired=", 1),
		"a path that is not one": h.HS.URL + connector.MediaPathPrefix + "hs.example/abc/x?" + strings.SplitN(url, "?", 2)[1],
	}
	for name, u := range forbidden {
		if code, body := get(u, connectortest.Token); code != http.StatusForbidden || strings.Contains(body, "media:") {
			t.Errorf("%s: %d %q, want 403 without the media", name, code, body)
		}
	}
	// A connector's own token fetches only what was signed for it.
	if code, _ := get(url, ownToken); code != http.StatusForbidden {
		t.Errorf("another connector's media with an own token: %d, want 403", code)
	}
	rc, _, err := rawconn.Dial(context.Background(), h.URL, ownToken, []string{connector.Subprotocol})
	if err != nil {
		t.Fatal(err)
	}
	// Dropped before the harness closes the server, which otherwise waits
	// its close grace (2 s) for a close frame this reader never answers.
	t.Cleanup(func() { _ = rc.Close() })
	if err := rc.WriteFrame(connector.Frame{Type: connector.TypeHello}, connectortest.Hello("own")); err != nil {
		t.Fatal(err)
	}
	if f := connectortest.MustRead(t, rc); f.Type != connector.TypeWelcome {
		t.Fatalf("own token, own id: %+v", f)
	}
	connectortest.Eventually(t, "connector own live", func() bool { return h.Srv.Connected("own") })
	ownURL, _ := h.Srv.MediaURL("own", "hs.example", "abc")
	if code, _ := get(ownURL, connectortest.Token); code != http.StatusForbidden {
		t.Errorf("an own connector's media with the shared token: %d, want 403", code)
	}
	if code, body := get(ownURL, ownToken); code != http.StatusOK || body != "media:hs.example/abc" {
		t.Errorf("own media with own token: %d %q", code, body)
	}
	resp, err := http.Get(h.HS.URL + "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("other path: %d", resp.StatusCode)
	}
}
