package bridge_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"math/rand"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestEncryptedLargeFile: an encrypted file from the user above the inline
// limit goes to the connector by URL; the bridge decrypts it while the
// connector fetches it, and the network side gets the exact plaintext. The
// URL carries only a handle (the keys stay in the bridge's database), so a
// fresh URL for the same file works after a bridge restart; a file that
// does not match its hash is cut off, not delivered corrupt.
func TestEncryptedLargeFile(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{encryption: true, configure: func(cfg *config.Config) {
			cfg.Bridge.InlineMediaBytes = 4096
			cfg.Bridge.MaxMediaBytes = 400 << 10
		}})
		ff := &fetchedFiles{sums: map[string]string{}, size: map[string]int64{}}
		var mu sync.Mutex
		got := map[string]*bytes.Buffer{}
		f := s.connectFakeWith(fetchingConnector(ff, func(txn string) io.Writer {
			mu.Lock()
			defer mu.Unlock()
			got[txn] = &bytes.Buffer{}
			return got[txn]
		}))
		nio := startNio(t, s, "alice")
		nio.do(map[string]any{"cmd": "create_dm", "ghost": string(s.ghost("bob@network")), "text": "a file follows"})
		waitSent(t, f, 1)

		big := make([]byte, 300<<10)
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n"
		rng := rand.New(rand.NewSource(7))
		for i := range big {
			big[i] = letters[rng.Intn(len(letters))]
		}
		sent := nio.do(map[string]any{"cmd": "send_file", "name": "big.txt", "data": string(big)})
		txn := sent["event_id"].(string)
		tesths.WaitFor(t, 60*time.Second, "the large encrypted file fetched by the connector", func() (bool, error) {
			_, _, ok := ff.get(txn)
			return ok, nil
		})
		mu.Lock()
		data := got[txn].Bytes()
		mu.Unlock()
		if !bytes.Equal(data, big) {
			t.Fatalf("the network got %d bytes, want the %d plaintext bytes of the file", len(data), len(big))
		}
		cmds := f.commandsOf(connector.OpSendMessage)
		att := cmds[len(cmds)-1].Attachments[0]
		u, err := url.Parse(att.URL)
		if err != nil || att.Data != nil || att.Name != "big.txt" || att.Size != int64(len(big)) {
			t.Fatalf("attachment = %+v (%v), want by URL, named, with its size", att, err)
		}
		server, handle, ok := connector.ParseMediaPath(u.EscapedPath())
		if !ok || server != connector.EncryptedMediaServer || len(handle) < 40 {
			t.Fatalf("media URL %s: want an unguessable handle under %s", att.URL, connector.EncryptedMediaServer)
		}
		for k := range u.Query() {
			if k != "connector" && k != "expires" && k != "sig" {
				t.Fatalf("media URL %s carries %q", att.URL, k)
			}
		}

		// Over bridge.max_media_bytes: a notice, nothing to the network.
		nio.do(map[string]any{"cmd": "send_file", "name": "huge.txt", "data": strings.Repeat("x", 500<<10)})
		notice := nio.do(map[string]any{"cmd": "expect", "body": `⚠️ "huge.txt"`, "timeout": 60})
		if !strings.Contains(notice["body"].(string), "larger than the bridge's limit") {
			t.Fatalf("notice for the file over the limit = %v", notice)
		}
		if n := len(f.commandsOf(connector.OpSendMessage)); n != len(cmds) {
			t.Fatalf("%d send_message commands after the file over the limit, want %d", n, len(cmds))
		}

		// After a restart, a re-sent command's fresh URL still gets the file.
		s.restartBridge()
		tesths.WaitFor(t, 30*time.Second, "the connector back", func() (bool, error) { return s.br.Conn.Connected("fake"), nil })
		fetch := func() ([]byte, error) {
			fresh, ok := s.br.Conn.MediaURL("fake", server, handle)
			if !ok {
				t.Fatal("no media URL for the connector")
			}
			body, err := f.client.OpenAttachment(context.Background(), nil, &connector.Attachment{Name: "big.txt", URL: fresh})
			if err != nil {
				return nil, err
			}
			defer body.Close()
			return io.ReadAll(body)
		}
		if again, err := fetch(); err != nil || !bytes.Equal(again, big) {
			t.Fatalf("fetch after the restart: %d bytes, %v; want the file", len(again), err)
		}

		// A file that does not match its hash: the download fails.
		ctx := context.Background()
		row, err := s.br.DB.EncMedia.Get(ctx, handle)
		if err != nil || row == nil {
			t.Fatalf("encrypted_media row: %v %v", row, err)
		}
		if bytes.Contains(row.Sealed, []byte(`"iv"`)) {
			t.Fatal("the file's keys are stored in the clear")
		}
		file, err := s.br.E2EE.OpenFileKeys(row.Sealed)
		if err != nil {
			t.Fatal(err)
		}
		wrong := sha256.Sum256([]byte("not the file"))
		file.Hashes.SHA256 = base64.RawStdEncoding.EncodeToString(wrong[:])
		sealed, err := s.br.E2EE.SealFileKeys(file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err = s.br.DB.Exec(ctx, "UPDATE encrypted_media SET sealed=$1 WHERE handle=$2", sealed, handle); err != nil {
			t.Fatal(err)
		}
		if corrupt, err := fetch(); err == nil {
			t.Fatalf("a file with the wrong hash downloaded fine (%d bytes), want a failed download", len(corrupt))
		} else {
			t.Logf("file with a wrong hash: the download failed after %d of %d bytes: %v", len(corrupt), len(big), err)
		}
	})
}
