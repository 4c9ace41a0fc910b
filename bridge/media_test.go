package bridge_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

func makePNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := 0; x < w; x++ {
		img.Set(x, x%h, color.RGBA{R: 200, A: 255})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fileServer serves fixed files and counts requests per path.
type fileServer struct {
	*httptest.Server
	mu    sync.Mutex
	hits  map[string]int
	files map[string][]byte
}

func newFileServer(t testing.TB, files map[string][]byte) *fileServer {
	fs := &fileServer{hits: map[string]int{}, files: files}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		fs.hits[r.URL.Path]++
		data, ok := fs.files[r.URL.Path]
		fs.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fileServer) hitsOf(path string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.hits[path]
}

func (s *stack) download(uri id.ContentURIString) []byte {
	s.t.Helper()
	parsed, err := uri.Parse()
	if err != nil {
		s.t.Fatalf("content uri %q: %v", uri, err)
	}
	data, err := s.alice.DownloadBytes(context.Background(), parsed)
	if err != nil {
		s.t.Fatalf("download %s: %v", uri, err)
	}
	return data
}

func TestMediaFromNetwork(t *testing.T) {
	s := newFidelityStack(t, testdb.SQLite(t), func(cfg *config.Config) {
		cfg.Bridge.MaxMediaBytes = 1 << 20
		cfg.Bridge.MediaFetchAllow = loopbackMedia
	})
	f := s.fidConnect(fakeSetup{})
	roomID, first := s.fidPortal(f, "m1", "hi")
	pic := makePNG(t, 40, 30)
	srv := newFileServer(t, map[string][]byte{"/pic.png": pic})

	ev := fidFromBob(connector.KindMessage, "m2")
	ev.Text, ev.ReplyTo = "look at these", "m1"
	ev.Attachments = []connector.Attachment{
		{Name: "pic.png", MimeType: "image/png", Size: int64(len(pic)), URL: srv.URL + "/pic.png"},
		{Name: "notes.txt", MimeType: "text/plain", Size: 10, Data: []byte("some notes")},
		{Name: "voice.ogg", MimeType: "audio/ogg", Size: 4, Data: []byte("OggS")},
		{Name: "clip.mp4", MimeType: "video/mp4", Size: 5, Data: []byte("video")},
		{Name: "huge.bin", MimeType: "application/octet-stream", Size: 2 << 20, URL: srv.URL + "/huge.bin"},
	}
	text := s.fidShown(f, roomID, ev)
	if text.RelatesTo.GetReplyTo() != first.ID {
		t.Errorf("the reply relation belongs on the first part, got %+v", text.RelatesTo)
	}
	byName := func(name string) *event.MessageEventContent {
		return s.fidRoomEvent(roomID, event.EventMessage, func(evt *event.Event) bool {
			msg := evt.Content.AsMessage()
			return msg.FileName == name || msg.Body == name
		}).Content.AsMessage()
	}
	img := byName("pic.png")
	if img.MsgType != event.MsgImage || img.Info == nil || img.Info.MimeType != "image/png" ||
		img.Info.Size != len(pic) || img.Info.Width != 40 || img.Info.Height != 30 {
		t.Errorf("image event = %+v info %+v", img, img.Info)
	}
	if got := s.download(img.URL); !bytes.Equal(got, pic) {
		t.Errorf("uploaded image differs: %d bytes, want %d", len(got), len(pic))
	}
	for name, want := range map[string]event.MessageType{"notes.txt": event.MsgFile, "voice.ogg": event.MsgAudio, "clip.mp4": event.MsgVideo} {
		got := byName(name)
		if got.MsgType != want || got.Info == nil || got.Info.MimeType == "" || got.Info.Size == 0 {
			t.Errorf("%s: msgtype %s info %+v, want %s", name, got.MsgType, got.Info, want)
		}
	}
	if got := s.download(byName("notes.txt").URL); string(got) != "some notes" {
		t.Errorf("notes.txt content = %q", got)
	}
	s.fidNotice(roomID, "huge.bin", "larger than the bridge's limit")
	if n := srv.hitsOf("/huge.bin"); n != 0 {
		t.Errorf("a file announced over the limit was fetched %d times", n)
	}
}

// fetchedFiles records what the fake connector fetched for send_message.
type fetchedFiles struct {
	mu   sync.Mutex
	sums map[string]string // txn -> sha256
	size map[string]int64
}

func (ff *fetchedFiles) get(txn string) (string, int64, bool) {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	sum, ok := ff.sums[txn]
	return sum, ff.size[txn], ok
}

// fetchingConnector is a fakeSetup whose connector fetches each attachment
// of send_message before answering, as a real one must, streaming it into
// a checksum (and into sink, if set).
func fetchingConnector(ff *fetchedFiles, sink func(txn string) io.Writer) fakeSetup {
	return fakeSetup{before: func(ctx context.Context, c *sdk.Client, op string, cmd *connector.Command) error {
		if op != connector.OpSendMessage || len(cmd.Attachments) == 0 {
			return nil
		}
		body, err := c.OpenAttachment(ctx, nil, &cmd.Attachments[0])
		if err != nil {
			return &connector.Error{Code: connector.ErrNetwork, Message: err.Error(), Retryable: true}
		}
		defer body.Close()
		h := sha256.New()
		var w io.Writer = h
		if sink != nil {
			w = io.MultiWriter(h, sink(cmd.Txn))
		}
		n, err := io.Copy(w, body)
		if err != nil {
			return &connector.Error{Code: connector.ErrNetwork, Message: err.Error(), Retryable: true}
		}
		ff.mu.Lock()
		ff.sums[cmd.Txn], ff.size[cmd.Txn] = hex.EncodeToString(h.Sum(nil)), n
		ff.mu.Unlock()
		return nil
	}}
}

func TestMediaFromMatrix(t *testing.T) {
	s := newFidelityStack(t, testdb.SQLite(t), func(cfg *config.Config) { cfg.Bridge.MaxMediaBytes = 1 << 20 })
	ff := &fetchedFiles{sums: map[string]string{}, size: map[string]int64{}}
	f := s.fidConnect(fetchingConnector(ff, nil))
	roomID, _ := s.fidPortal(f, "m1", "send me things")
	ctx := context.Background()

	small, err := s.alice.UploadBytesWithName(ctx, []byte("tiny file"), "text/plain", "tiny.txt")
	if err != nil {
		t.Fatal(err)
	}
	cmd := s.fidSendFromMatrix(f, roomID, &event.MessageEventContent{
		MsgType: event.MsgFile, Body: "tiny.txt", URL: small.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "text/plain", Size: 9},
	})
	if len(cmd.Attachments) != 1 {
		t.Fatalf("send_message has %d attachments", len(cmd.Attachments))
	}
	if a := cmd.Attachments[0]; string(a.Data) != "tiny file" || a.URL != "" || a.Name != "tiny.txt" || a.MimeType != "text/plain" || a.Size != 9 || cmd.Text != "" {
		t.Errorf("small file went as %+v (text %q), want inline data", a, cmd.Text)
	}

	// An image with a caption, over the inline size: a URL on the connector
	// listener, fetched with the bearer token.
	pic := pseudoRandom(600 << 10)
	up, err := s.alice.UploadBytesWithName(ctx, pic, "image/png", "big.png")
	if err != nil {
		t.Fatal(err)
	}
	cmd = s.fidSendFromMatrix(f, roomID, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: "a caption", FileName: "big.png", URL: up.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "image/png", Size: len(pic)},
	})
	a := cmd.Attachments[0]
	if len(a.Data) != 0 || !strings.HasPrefix(a.URL, "http://"+s.cfg.Connector.Listen+connector.MediaPathPrefix) ||
		a.Name != "big.png" || a.Size != int64(len(pic)) || cmd.Text != "a caption" {
		t.Errorf("large image went as url=%q name=%q size=%d text=%q", a.URL, a.Name, a.Size, cmd.Text)
	}
	sum := sha256.Sum256(pic)
	if got, _, ok := ff.get(cmd.Txn); !ok || got != hex.EncodeToString(sum[:]) {
		t.Errorf("connector fetched checksum %q, want %x", got, sum)
	}
	// Without the token the media endpoint refuses.
	if r, err := http.Get(a.URL); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Errorf("media fetch without token: %v %v", r.StatusCode, err)
	}
	// With the token, but for media that was not handed to this connector
	// (the user's other upload, named without a signature or under the
	// big image's signature): 403 and none of the file.
	base, _, _ := strings.Cut(a.URL, "?")
	other := "http://" + s.cfg.Connector.Listen + connector.MediaPath(small.ContentURI.Homeserver, small.ContentURI.FileID)
	for name, u := range map[string]string{
		"unsigned":                   base,
		"another file":               other,
		"another file, borrowed sig": other + a.URL[len(base):],
	} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+testConnectorToken)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if r.StatusCode != http.StatusForbidden || strings.Contains(string(body), "tiny file") || len(body) > 200 {
			t.Errorf("%s: HTTP %d with %d bytes, want 403 and no file", name, r.StatusCode, len(body))
		}
	}

	// Over the size limit: a notice, no command.
	_, err = s.alice.SendMessageEvent(ctx, roomID, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgFile, Body: "big.iso", URL: small.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "application/octet-stream", Size: 3 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.fidNotice(roomID, "big.iso", "was not delivered", "larger than the bridge's limit")

	// A network without media: the user is told.
	caps := helloFor().Capabilities
	caps.Media = false
	f = s.fidConnect(fakeSetup{caps: &caps, store: f.store})
	if _, err = s.alice.SendMessageEvent(ctx, roomID, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgFile, Body: "report.pdf", URL: small.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "application/pdf", Size: 9},
	}); err != nil {
		t.Fatal(err)
	}
	s.fidNotice(roomID, "your file was not delivered", "does not support files")
	for _, c := range f.commandsOf(connector.OpSendMessage) {
		t.Errorf("network without media got send_message %+v", c)
	}
}

// pseudoRandom is incompressible test data, the same on every run.
func pseudoRandom(n int) []byte {
	out := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range out {
		out[i] = byte(r.Uint32())
	}
	return out
}
