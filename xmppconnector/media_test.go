package xmppconnector

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

const testUploadLimit = 2 << 20

// mediaBridge puts a media endpoint in front of the fake bridge, on the
// same host and port as its websocket, the way the real bridge serves
// files to connectors. It checks the token itself, so the test sees that
// the connector sends it. A path ending in .chunked is answered without a
// Content-Length.
type mediaBridge struct {
	mu         sync.Mutex
	files      map[string][]byte
	noToken    atomic.Int32
	downloaded atomic.Int32
}

func (m *mediaBridge) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, connector.MediaPathPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+bridgeToken {
			m.noToken.Add(1)
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		m.mu.Lock()
		data, ok := m.files[r.URL.Path]
		m.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		m.downloaded.Add(1)
		if strings.HasSuffix(r.URL.Path, ".chunked") {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
		}
		_, _ = w.Write(data)
	})
}

func (m *mediaBridge) put(path string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[path] = data
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// fetch GETs a URL the way the receiving client would, without any token.
func fetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d, %v", url, resp.StatusCode, err)
	}
	return data
}

func TestSendFilesToXMPP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testxmpp.WithUploadLimit(testUploadLimit))
	media := &mediaBridge{files: map[string][]byte{}}
	front := httptest.NewServer(media.wrap(e.bridge.srv))
	t.Cleanup(front.Close)
	e.cfg.Bridge.URL = front.URL
	stop := e.start(t)
	bob := e.xmpp.Dial(t, "bob", bobPW)
	// Sets the archive cursor, so the restart below catches up our sends.
	bob.SendChat(t, e.alice, "cursor", "")
	e.bridge.waitEvent(t, "a message to set the cursor", isMessage("cursor"))
	caps, _ := e.bridge.srv.Capabilities("xmpp")
	if !caps.Media {
		t.Fatal("hello announced media: false although Prosody offers HTTP upload")
	}

	chat := e.bobChat()
	send := func(txn, text string, atts ...connector.Attachment) (*connector.Result, error) {
		t.Helper()
		return e.bridge.command(t, connector.OpSendMessage, &connector.Command{
			Login: e.alice, Chat: chat, Txn: txn, Text: text, Attachments: atts})
	}
	// expectFile waits for bob's next message and checks it shares want.
	expectFile := func(txn string, want []byte) {
		t.Helper()
		m := bob.Next(t, waitLong, testxmpp.WithBody)
		if m.OriginID != txn || m.OOB == "" || m.Body != m.OOB {
			t.Fatalf("bob got %+v, want a file message with origin-id %s and body = oob url", m, txn)
		}
		if got := fetch(t, m.OOB); sha256.Sum256(got) != sha256.Sum256(want) {
			t.Fatalf("%s serves %d bytes that differ from the %d sent", m.OOB, len(got), len(want))
		}
	}

	// Inline, the way the bridge sends small files; the body being the
	// file name is not a caption.
	small := randomBytes(t, 300<<10)
	inline := connector.Attachment{Name: "notes.txt", MimeType: "text/plain", Size: int64(len(small)), Data: small}
	res, err := send("$inline", "notes.txt", inline)
	if err != nil || res.ID != "$inline" {
		t.Fatalf("send inline file: %v, %+v", err, res)
	}
	expectFile("$inline", small)

	// The same txn again is answered, not executed: bob's next message is
	// the following file.
	if res, err := send("$inline", "notes.txt", inline); err != nil || res.ID != "$inline" {
		t.Fatalf("repeated txn: %v, %+v", err, res)
	}

	// By URL on the bridge's media endpoint, with a caption after it.
	big := randomBytes(t, 1<<20)
	media.put(connector.MediaPath("localhost", "big"), big)
	began := time.Now()
	res, err = send("$url", "look at this", connector.Attachment{Name: "photo.jpg", MimeType: "image/jpeg",
		Size: int64(len(big)), URL: connector.MediaPath("localhost", "big")})
	took := time.Since(began)
	if err != nil || res.ID != "$url" {
		t.Fatalf("send url file: %v, %+v", err, res)
	}
	t.Logf("1 MiB file fetched, uploaded and shared in %s", took.Round(time.Millisecond))
	expectFile("$url", big)
	if caption := bob.Next(t, waitLong, testxmpp.WithBody); caption.Body != "look at this" || caption.OOB != "" {
		t.Fatalf("caption arrived as %+v", caption)
	}

	// No Content-Length and no announced size: spooled, then uploaded.
	odd := randomBytes(t, 100<<10)
	media.put(connector.MediaPath("localhost", "odd.chunked"), odd)
	if _, err := send("$chunked", "", connector.Attachment{Name: "odd.bin", URL: connector.MediaPath("localhost", "odd.chunked")}); err != nil {
		t.Fatalf("send chunked file: %v", err)
	}
	expectFile("$chunked", odd)

	// Over the server's limit: refused by the announced size before any
	// download, or by the real length when the announcement was wrong.
	huge := randomBytes(t, testUploadLimit+1)
	media.put(connector.MediaPath("localhost", "huge"), huge)
	media.put(connector.MediaPath("localhost", "huge.chunked"), huge)
	for i, att := range []connector.Attachment{
		{Name: "huge.iso", Size: 3 << 20, URL: connector.MediaPath("localhost", "huge")},
		{Name: "huge.iso", URL: connector.MediaPath("localhost", "huge")},
		{Name: "huge.iso", Size: 1000, URL: connector.MediaPath("localhost", "huge.chunked")},
	} {
		_, err := send(fmt.Sprintf("$huge-%d", i), "", att)
		var perr *connector.Error
		if !errors.As(err, &perr) || perr.Code != connector.ErrUnsupported || perr.Retryable || !strings.Contains(perr.Message, "2.0 MiB") {
			t.Errorf("oversize file (size %d, %s): %v, want non-retryable M_UNSUPPORTED naming the 2.0 MiB limit", att.Size, att.URL, err)
		}
	}

	if n := media.noToken.Load(); n != 0 {
		t.Errorf("%d media requests came without the bridge token", n)
	}
	for _, m := range bob.Drain() {
		if m.Body != "" {
			t.Errorf("bob got an unexpected message %+v", m)
		}
	}

	// The archive copies of the sends come back as the bridge's own (with
	// txn), the caption and later files included, never as new messages.
	stop()
	e.start(t)
	bob.SendChat(t, e.alice, "after the restart", "")
	e.bridge.waitEvent(t, "bob's message after the restart", isMessage("after the restart"))
	echo := e.bridge.waitEvent(t, "the echo of the url file", func(ev *connector.Event) bool { return ev.Txn == "$url" })
	if len(echo.Attachments) != 1 || echo.ID != "$url" {
		t.Errorf("echo of $url = %s %+v, want its file under id $url", eventString(echo), echo.Attachments)
	}
	for _, ev := range e.bridge.matching(kind(connector.KindMessage)) {
		if ev.Sender.IsMe && ev.Txn == "" {
			t.Errorf("own send bridged back as a new message: %s", eventString(ev))
		}
	}
}

func TestNoUploadServiceNoMedia(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testxmpp.WithoutUpload())
	e.start(t)
	if caps, _ := e.bridge.srv.Capabilities("xmpp"); caps.Media {
		t.Error("hello announced media: true for a server without HTTP upload")
	}
	// A bridge that sends files anyway is told plainly.
	_, err := e.bridge.command(t, connector.OpSendMessage, &connector.Command{
		Login: e.alice, Chat: e.bobChat(), Txn: "$file",
		Attachments: []connector.Attachment{{Name: "a.txt", Size: 1, Data: []byte("a")}}})
	var perr *connector.Error
	if !errors.As(err, &perr) || perr.Code != connector.ErrUnsupported || perr.Retryable {
		t.Errorf("file to a server without upload: %v, want non-retryable M_UNSUPPORTED", err)
	}
}

func TestIncomingFileFromXMPP(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	data := randomBytes(t, 64<<10)
	url := bob.Upload(t, "cat.png", "image/png", data)
	bob.SendFile(t, e.alice, url)
	ev := e.bridge.waitEvent(t, "the file message", func(ev *connector.Event) bool {
		return ev.Kind == connector.KindMessage && len(ev.Attachments) == 1
	})
	att := ev.Attachments[0]
	if att.URL != url || att.Name != "cat.png" || att.MimeType != "image/png" || ev.Text != "" || ev.Sender.ID != e.bob {
		t.Fatalf("file bridged as %s %+v, want cat.png at %s without text", eventString(ev), att, url)
	}
	// The bridge fetches it with a plain GET.
	if got := fetch(t, att.URL); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("the attachment url serves other bytes than bob uploaded")
	}
}

func TestUploadDiscoveryForm(t *testing.T) {
	var d discoInfo
	raw := `<query xmlns='http://jabber.org/protocol/disco#info'><identity category='store' type='file'/>` +
		`<feature var='urn:xmpp:http:upload:0'/><x xmlns='jabber:x:data' type='result'>` +
		`<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:http:upload:0</value></field>` +
		`<field var='max-file-size'><value>5242880</value></field></x></query>`
	if err := xml.NewDecoder(strings.NewReader(raw)).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if ok, limit := d.upload(); !ok || limit != 5<<20 {
		t.Errorf("upload() = %v, %d; want true, 5 MiB", ok, limit)
	}
	for in, want := range map[string]string{"a/b/c.txt": "c.txt", `C:\x\y.png`: "y.png", "": "file", "..": "file"} {
		if got := uploadName(in); got != want {
			t.Errorf("uploadName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUploadToInternalSlotRefused: the upload slot's URL is the server's to
// choose; one on loopback (here Prosody's own) is refused unless
// xmpp.upload_allow opens it, the error does not name the address, and
// nothing reaches the contact.
func TestUploadToInternalSlotRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.XMPP.UploadAllow = nil
	e.start(t)
	bob := e.xmpp.Dial(t, "bob", bobPW)
	chat := e.bobChat()
	_, err := e.bridge.command(t, connector.OpSendMessage, &connector.Command{
		Login: e.alice, Chat: chat, Txn: "$file", Attachments: []connector.Attachment{{Name: "a.txt", Size: 1, Data: []byte("a")}}})
	if err == nil || !strings.Contains(err.Error(), "local or private network") || strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("upload to a loopback slot: %v, want a refusal that does not name the address", err)
	}
	if _, err := e.bridge.command(t, connector.OpSendMessage, &connector.Command{Login: e.alice, Chat: chat, Txn: "$text", Text: "after"}); err != nil {
		t.Fatal(err)
	}
	if m := bob.Next(t, waitLong, testxmpp.WithBody); m.Body != "after" || m.OOB != "" {
		t.Errorf("bob got %+v first, want only the text", m)
	}
}
