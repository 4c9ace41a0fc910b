package sdk

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
)

// TestOpenAttachmentToken: the connector token goes to the bridge's own
// listener and nowhere else, whatever URL an attachment names.
func TestOpenAttachmentToken(t *testing.T) {
	seen := make(chan string, 4)
	serve := func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Authorization")
		_, _ = io.WriteString(w, "payload:"+r.URL.Path)
	}
	bridge := httptest.NewServer(http.HandlerFunc(serve))
	defer bridge.Close()
	other := httptest.NewServer(http.HandlerFunc(serve))
	defer other.Close()
	c := NewClient(ClientOptions{URL: strings.Replace(bridge.URL, "http", "ws", 1), Token: "secret"})
	ctx := context.Background()

	read := func(a *connector.Attachment) string {
		t.Helper()
		body, err := c.OpenAttachment(ctx, nil, a)
		if err != nil {
			t.Fatal(err)
		}
		defer body.Close()
		data, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if got := read(&connector.Attachment{Name: "inline", Data: []byte("inline bytes")}); got != "inline bytes" {
		t.Errorf("inline attachment = %q", got)
	}
	if got := read(&connector.Attachment{URL: bridge.URL + connector.MediaPath("hs", "m1")}); got != "payload:"+connector.MediaPath("hs", "m1") {
		t.Errorf("bridge attachment = %q", got)
	}
	if auth := <-seen; auth != "Bearer secret" {
		t.Errorf("bridge got Authorization %q, want the token", auth)
	}
	if got := read(&connector.Attachment{URL: connector.MediaPath("hs", "m2")}); got != "payload:"+connector.MediaPath("hs", "m2") {
		t.Errorf("relative attachment = %q", got)
	}
	if auth := <-seen; auth != "Bearer secret" {
		t.Errorf("relative URL: bridge got Authorization %q, want the token", auth)
	}
	read(&connector.Attachment{URL: other.URL + "/file"})
	if auth := <-seen; auth != "" {
		t.Errorf("a third-party host got Authorization %q", auth)
	}
}

// TestOpenAttachmentTokenExactOrigin: the token goes to the exact origin of
// the bridge URL, so neither an http:// URL of a wss:// bridge on the same
// host and port, nor a redirect from the bridge to another port, gets it.
func TestOpenAttachmentTokenExactOrigin(t *testing.T) {
	seen := make(chan string, 4)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Authorization")
		_, _ = io.WriteString(w, "elsewhere")
	}))
	defer other.Close()
	bridge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Authorization")
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, other.URL+"/file", http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "plain")
	}))
	defer bridge.Close()
	ctx := context.Background()
	open := func(c *Client, url string) {
		t.Helper()
		body, err := c.OpenAttachment(ctx, nil, &connector.Attachment{Name: "f", URL: url})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, body)
		_ = body.Close()
	}

	// The client believes it talks TLS to this host and port.
	tlsClient := NewClient(ClientOptions{URL: strings.Replace(bridge.URL, "http://", "wss://", 1), Token: "secret"})
	open(tlsClient, bridge.URL+"/file")
	if auth := <-seen; auth != "" {
		t.Errorf("an http:// URL of a wss:// bridge got Authorization %q", auth)
	}

	plain := NewClient(ClientOptions{URL: strings.Replace(bridge.URL, "http://", "ws://", 1), Token: "secret"})
	open(plain, bridge.URL+"/redirect")
	if auth := <-seen; auth != "Bearer secret" {
		t.Errorf("the bridge got Authorization %q, want the token", auth)
	}
	if auth := <-seen; auth != "" {
		t.Errorf("a redirect to another port carried Authorization %q", auth)
	}
}
