package xmppconnector

import (
	"encoding/base64"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// A contact's vCard PHOTO is decoded, kept in memory several times over
// (raw tokens, the decoded struct, base64 text, bytes) and stored in SQLite
// whatever its size; the bridge refuses pictures over 10 MiB anyway. The
// connector sets no bound of its own, so only the server's stanza limit (if
// any) stands between a contact and the connector's memory and disk.
func TestHugeVCardPhotoIsBounded(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const me, eve = "alice@example.org", "eve@evil.example"
	store := openTestStore(t, filepath.Join(t.TempDir(), "c.db"))
	sink := &storingSink{store: store}
	a := newAccount(&AccountConfig{JID: me, MatrixUser: "@alice:example.org"}, &XMPPConfig{}, store, sink, "http://127.0.0.1:1", nil, zerolog.Nop())
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 24<<20)...)
	photo := base64.StdEncoding.EncodeToString(png)
	conn, _ := newFakeConn(t, me, a, func(s *fakeStanza) []string {
		if s.XMLName.Local == "iq" && strings.Contains(s.Inner, "vcard-temp") {
			return []string{`<iq type="result" id="` + s.attr("id") + `"><vCard xmlns="vcard-temp"><FN>Eve</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>` + photo + `</BINVAL></PHOTO></vCard></iq>`}
		}
		return nil
	})
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := a.fetchContact(ctx, conn, eve)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("allocated %d MiB while fetching one vCard", (after.TotalAlloc-before.TotalAlloc)>>20)
	if c.Avatar != nil {
		_, data, found, _ := store.Avatar(ctx, c.Avatar.ID)
		t.Fatalf("a %d MiB vCard photo was accepted and stored (found=%v, %d MiB in SQLite)", len(png)>>20, found, len(data)>>20)
	}
}

// A photo at the limit is kept, one byte over is not, and neither is a
// BINVAL whose text alone is past twice the limit (not even copied).
func TestPhotoBytesLimit(t *testing.T) {
	at := make([]byte, maxPhotoBytes)
	if data, err := photoBytes(base64.StdEncoding.EncodeToString(at)); err != nil || len(data) != maxPhotoBytes {
		t.Fatalf("a photo of exactly the limit: %d bytes, %v", len(data), err)
	}
	if _, err := photoBytes(base64.StdEncoding.EncodeToString(append(at, 0))); err != errPhotoTooLarge {
		t.Fatalf("a photo one byte over the limit: %v", err)
	}
	folded := strings.Repeat(strings.Repeat("A", 76)+"\r\n", 1000)
	if data, err := photoBytes(folded); err != nil || len(data) != 57*1000 {
		t.Fatalf("a folded BINVAL: %d bytes, %v", len(data), err)
	}
}
