package bridge_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

const roundTripBytes = 5 << 20

// writeRandomFile writes n pseudo-random bytes in small chunks, so that the
// test itself never holds the file in memory, and returns its checksum.
func writeRandomFile(t *testing.T, path string, n int) string {
	t.Helper()
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	h := sha256.New()
	w := io.MultiWriter(file, h)
	r := rand.New(rand.NewPCG(7, 11))
	chunk := make([]byte, 32<<10)
	for left := n; left > 0; left -= len(chunk) {
		for i := range chunk {
			chunk[i] = byte(r.Uint32())
		}
		if _, err := w.Write(chunk[:min(left, len(chunk))]); err != nil {
			t.Fatal(err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// heapPeak samples HeapInuse until stopped and reports the highest value.
type heapPeak struct {
	stop chan struct{}
	done chan uint64
}

func watchHeap() *heapPeak {
	hp := &heapPeak{stop: make(chan struct{}), done: make(chan uint64, 1)}
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-hp.stop:
				hp.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return hp
}

func (hp *heapPeak) finish() uint64 {
	close(hp.stop)
	return <-hp.done
}

// TestFiveMegabyteRoundTrip sends a 5 MiB file from Matrix to the network
// and back and checks it arrives byte-identical, and measures how much the
// process allocated meanwhile: bridge, fake connector and file server all
// stream, so the figure stays well under the file size. The figures are
// logged (go test -v -run TestFiveMegabyteRoundTrip ./bridge).
func TestFiveMegabyteRoundTrip(t *testing.T) {
	s := newFidelityStack(t, testdb.SQLite(t), func(cfg *config.Config) {
		cfg.Bridge.MaxMediaBytes = 16 << 20
		cfg.Bridge.MediaFetchAllow = loopbackMedia
	})
	dir := t.TempDir()
	src := filepath.Join(dir, "payload.bin")
	want := writeRandomFile(t, src, roundTripBytes)

	// The fake network keeps what its connector fetched on disk and offers
	// it back from there.
	fetchedPath := filepath.Join(dir, "fetched.bin")
	var sinkMu sync.Mutex
	var sink *os.File
	ff := &fetchedFiles{sums: map[string]string{}, size: map[string]int64{}}
	f := s.fidConnect(fetchingConnector(ff, func(string) io.Writer {
		sinkMu.Lock()
		defer sinkMu.Unlock()
		file, err := os.Create(fetchedPath)
		if err != nil {
			t.Error(err)
			return io.Discard
		}
		sink = file
		return file
	}))
	network := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, fetchedPath)
	}))
	t.Cleanup(network.Close)
	roomID, _ := s.fidPortal(f, "m1", "send me the file")
	ctx := context.Background()

	file, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	up, err := s.alice.UploadMedia(ctx, mautrix.ReqUploadMedia{
		Content: file, ContentLength: roundTripBytes, ContentType: "application/octet-stream", FileName: "payload.bin",
	})
	file.Close()
	if err != nil {
		t.Fatal(err)
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := watchHeap()

	// Matrix → network.
	cmd := s.fidSendFromMatrix(f, roomID, &event.MessageEventContent{
		MsgType: event.MsgFile, Body: "payload.bin", URL: up.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "application/octet-stream", Size: roundTripBytes},
	})
	if a := cmd.Attachments[0]; a.URL == "" || len(a.Data) != 0 || a.Size != roundTripBytes {
		t.Fatalf("5 MiB file went as url=%q data=%d size=%d, want a url", a.URL, len(a.Data), a.Size)
	}
	sum, n, ok := ff.get(cmd.Txn)
	if !ok || sum != want || n != roundTripBytes {
		t.Fatalf("connector got %d bytes with sha256 %s, want %d bytes %s", n, sum, roundTripBytes, want)
	}
	sinkMu.Lock()
	_ = sink.Close()
	sinkMu.Unlock()

	// Network → Matrix.
	ev := fidFromBob(connector.KindMessage, "m-back")
	ev.Attachments = []connector.Attachment{{Name: "payload-back.bin", MimeType: "application/octet-stream",
		Size: roundTripBytes, URL: network.URL + "/payload-back.bin"}}
	f.send(ev)
	back := s.fidRoomEvent(roomID, event.EventMessage, func(evt *event.Event) bool {
		return evt.Content.AsMessage().Body == "payload-back.bin"
	}).Content.AsMessage()

	peakInuse := peak.finish()
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("5 MiB round trip: %.2f MiB allocated in total (TotalAlloc delta), heap in use peaked %.2f MiB above the start (%.2f → %.2f MiB)",
		mib(allocated), mib(peakInuse-min(peakInuse, before.HeapInuse)), mib(before.HeapInuse), mib(peakInuse))

	if back.MsgType != event.MsgFile || back.Info == nil || back.Info.Size != roundTripBytes || back.Info.MimeType != "application/octet-stream" {
		t.Fatalf("file back from the network: %+v info %+v", back, back.Info)
	}
	uri, err := back.URL.Parse()
	if err != nil {
		t.Fatal(err)
	}
	dl, err := s.alice.Download(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Body.Close()
	h := sha256.New()
	if _, err = io.Copy(h, dl.Body); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("file after the round trip has sha256 %s, want %s", got, want)
	}
	// Everything on the way streams. Had any hop buffered the file, the
	// process would have allocated at least its size; the margin is wide
	// (typical runs allocate a fraction of it), so this is no timing test.
	if allocated >= roundTripBytes {
		t.Errorf("the round trip allocated %.2f MiB, at least the file's size: something buffers the whole file", mib(allocated))
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
