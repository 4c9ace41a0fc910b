package portal

import (
	"bytes"
	"image"
	"image/jpeg"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
)

// TestImageTypeFollowsTheBytes: an attachment's image claim is believed
// only where its bytes agree (or cannot tell, for formats the sniffer does
// not know); SVG and anything that is not a picture go as plain files.
// Found by a review (helper agent).
func TestImageTypeFollowsTheBytes(t *testing.T) {
	var jpg bytes.Buffer
	_ = jpeg.Encode(&jpg, image.NewRGBA(image.Rect(0, 0, 2, 2)), nil)
	for _, c := range []struct {
		name, claim string
		data        []byte
		want        string
		isImage     bool
	}{
		{"jpeg claimed jpeg", "image/jpeg", jpg.Bytes(), "image/jpeg", true},
		{"jpeg claimed png", "image/png", jpg.Bytes(), "image/jpeg", true},
		{"unknown bytes claimed heic", "image/heic", []byte{0, 0, 0, 0x18, 'f', 't', 'y', 'p', 'h', 'e', 'i', 'c'}, "image/heic", true},
		{"svg", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>`), "application/octet-stream", false},
		{"html claimed gif", "image/gif", []byte("<html><script>x</script>"), "application/octet-stream", false},
		{"text claimed png", "image/png", []byte("just words"), "application/octet-stream", false},
	} {
		if got, ok := imageType(c.claim, c.data); got != c.want || ok != c.isImage {
			t.Errorf("%s: %q %v, want %q %v", c.name, got, ok, c.want, c.isImage)
		}
	}
	// Through the bridge: an SVG is a file, served as bytes.
	u := newUnit(t, false)
	u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "m1", Sender: &connector.Sender{ID: "bob"},
		Attachments: []connector.Attachment{{Name: "x.svg", MimeType: "image/svg+xml", Data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`)}}})
	sends := u.sends()
	if c := sends[len(sends)-1].Content; c["msgtype"] != "m.file" || field(c, "info", "mimetype") != "application/octet-stream" {
		t.Errorf("svg posted as %v", c)
	}
}

// TestJPEGOrientation reads EXIF orientation in both byte orders and
// survives cut and malformed headers.
func TestJPEGOrientation(t *testing.T) {
	six := jpegWithOrientation(t, 40, 20)
	if got := jpegOrientation(six); got != 6 {
		t.Errorf("orientation %d, want 6", got)
	}
	if w, h, ok := imageSize(six); !ok || w != 20 || h != 40 {
		t.Errorf("size %dx%d %v, want 20x40", w, h, ok)
	}
	// Big-endian TIFF, orientation 3 (turned 180°: no swap).
	mm := []byte{'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0}
	if got := tiffOrientation(mm); got != 3 {
		t.Errorf("big-endian orientation %d, want 3", got)
	}
	for i := range len(six) {
		_ = jpegOrientation(six[:i]) // never panics on a cut header
	}
	bad := append([]byte{}, six...)
	bad[2+2], bad[2+3] = 0xFF, 0xFF // APP1 length beyond the data
	if got := jpegOrientation(bad); got != 0 {
		t.Errorf("bad length gave %d", got)
	}
	if got := tiffOrientation([]byte{'I', 'I', 42, 0, 0xFF, 0xFF, 0xFF, 0x7F}); got != 0 {
		t.Errorf("IFD offset beyond the data gave %d", got)
	}
}
