package xmppconnector

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// A contact's 24 MiB vCard PHOTO is refused (over maxPhotoBytes), and it
// is refused while it is read: the photo text past the limit is never kept,
// nor copied, nor decoded. Before, the XML decoder held the whole text,
// and the answer was copied token by token, decoded into a struct,
// stripped and decoded again before its size was looked at. Not parallel:
// the allocation count is the whole process's.
func TestHugeVCardPhotoIsBounded(t *testing.T) {
	ctx := t.Context()
	const me, eve = "alice@example.org", "eve@evil.example"
	store := openTestStore(t, filepath.Join(t.TempDir(), "c.db"))
	sink := &storingSink{store: store}
	a := newAccount(&AccountConfig{JID: me, MatrixUser: "@alice:example.org"}, &XMPPConfig{}, store, sink, "http://127.0.0.1:1", nil, zerolog.Nop())
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 24<<20)...)
	// Built before the measurement: the fake server's own copy of the
	// answer is not the connector's.
	head := `"><vCard xmlns="vcard-temp"><FN>Eve</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>` + base64.StdEncoding.EncodeToString(png) + `</BINVAL></PHOTO></vCard></iq>`
	png = nil
	conn, fs := newFakeConn(t, me, a, nil)
	fs.handler = func(s *fakeStanza) []string {
		if s.XMLName.Local == "iq" && strings.Contains(s.Inner, "vcard-temp") {
			return []string{`<iq type="result" id="` + s.attr("id"), head}
		}
		return nil
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := a.fetchContact(ctx, conn, eve)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d MiB while fetching one vCard with a 32 MiB BINVAL", allocated>>20)
	if c.Avatar != nil {
		t.Fatalf("a 24 MiB vCard photo was accepted as the avatar")
	}
	if c.Name != "Eve" {
		t.Fatalf("the vCard's name was lost with its photo: %q", c.Name)
	}
	// The photo's text is kept up to the limit (13 MiB of base64) before
	// it is known to be too large; the XML decoder holds no more than a
	// piece of it (xmlsplit.go). Before, the fetch allocated 224 MiB.
	if allocated > 40<<20 {
		t.Fatalf("fetching a vCard with an oversized photo allocated %d MiB", allocated>>20)
	}
}

// tokenList is an xml.TokenReader over fixed tokens.
type tokenList []xml.Token

func (l *tokenList) Token() (xml.Token, error) {
	if len(*l) == 0 {
		return nil, io.EOF
	}
	tok := (*l)[0]
	*l = (*l)[1:]
	return tok, nil
}

// What readVCard itself allocates for a 32 MiB BINVAL whose second piece
// alone is past the limit: nothing of its size, as that piece is counted
// before it is copied.
// Not parallel: the allocation count is the whole process's.
func TestReadVCardKeepsNoOversizedPhoto(t *testing.T) {
	text := xml.CharData(bytes.Repeat([]byte("QUFB"), 8<<20))
	el := func(name string) xml.Name { return xml.Name{Space: nsVCard, Local: name} }
	toks := tokenList{
		xml.StartElement{Name: el("FN")}, xml.CharData("Eve"), xml.EndElement{Name: el("FN")},
		xml.StartElement{Name: el("PHOTO")}, xml.StartElement{Name: el("BINVAL")},
		text[:64<<10], text[64<<10:], // split as a decoder fed in pieces would
		xml.EndElement{Name: el("BINVAL")}, xml.EndElement{Name: el("PHOTO")},
		xml.EndElement{Name: el("vCard")},
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	vc, err := readVCard(&toks)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("readVCard allocated %d KiB for a %d MiB BINVAL", allocated>>10, len(text)>>20)
	if !vc.Photo.TooLarge || vc.Photo.BinVal != nil || vc.FN != "Eve" {
		t.Fatalf("read as FN %q, too large %v, %d bytes of photo kept", vc.FN, vc.Photo.TooLarge, len(vc.Photo.BinVal))
	}
	// The first piece is kept until the second takes it past the limit; a
	// copy of the photo would be 13 MiB at the least.
	if allocated > 4<<20 {
		t.Fatalf("readVCard allocated %d MiB for an oversized photo", allocated>>20)
	}
}

// A photo at the limit is kept, one byte over is not, and a folded BINVAL
// (RFC 2045 lines) is read without its whitespace.
func TestVCardPhotoLimit(t *testing.T) {
	read := func(binval string) *vCard {
		t.Helper()
		d := xml.NewDecoder(strings.NewReader(`<vCard xmlns="vcard-temp"><NICKNAME>n</NICKNAME><PHOTO><TYPE>image/png</TYPE><BINVAL>` +
			binval + `</BINVAL></PHOTO><PHOTO><BINVAL>QUFB</BINVAL></PHOTO></vCard>`))
		if _, err := d.Token(); err != nil {
			t.Fatal(err)
		}
		vc, err := readVCard(d)
		if err != nil {
			t.Fatal(err)
		}
		if vc.Nickname != "n" || vc.Photo.Type != "image/png" {
			t.Fatalf("fields beside the photo: %+v", vc)
		}
		return vc
	}
	at := make([]byte, maxPhotoBytes)
	vc := read(base64.StdEncoding.EncodeToString(at))
	if data, err := photoBytes(vc.Photo.BinVal); err != nil || len(data) != maxPhotoBytes {
		t.Fatalf("a photo of exactly the limit: %d bytes, %v", len(data), err)
	}
	// One byte over has the same base64 length (padding): refused once
	// decoded. Three over is longer text: refused while read.
	if _, err := photoBytes(read(base64.StdEncoding.EncodeToString(append(at, 0))).Photo.BinVal); err != errPhotoTooLarge {
		t.Fatalf("a photo one byte over the limit: %v", err)
	}
	if vc := read(base64.StdEncoding.EncodeToString(append(at, 0, 0, 0))); !vc.Photo.TooLarge || vc.Photo.BinVal != nil {
		t.Fatalf("a photo three bytes over the limit: too large %v, %d bytes kept", vc.Photo.TooLarge, len(vc.Photo.BinVal))
	}
	folded := strings.Repeat(strings.Repeat("A", 76)+"\r\n", 1000)
	if data, err := photoBytes(read(folded).Photo.BinVal); err != nil || len(data) != 57*1000 {
		t.Fatalf("a folded BINVAL: %d bytes, %v", len(data), err)
	}
}

// FN is kept up to maxVCardTextBytes, cut at a character boundary.
func TestVCardNameIsBounded(t *testing.T) {
	long := "a" + strings.Repeat("ü", maxVCardTextBytes)
	d := xml.NewDecoder(strings.NewReader(`<vCard xmlns="vcard-temp"><FN>` + long + `</FN></vCard>`))
	if _, err := d.Token(); err != nil {
		t.Fatal(err)
	}
	vc, err := readVCard(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(vc.FN) != maxVCardTextBytes-1 || !strings.HasPrefix(long, vc.FN) {
		t.Fatalf("FN of %d bytes kept as %d bytes", len(long), len(vc.FN))
	}
}
