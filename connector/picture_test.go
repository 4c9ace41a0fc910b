package connector

import "testing"

// TestPictureType: the bytes decide the type; a claimed picture type only
// stands for bytes the sniffer does not know, and never for SVG or markup.
func TestPictureType(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	heic := []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
	for _, c := range []struct {
		name, claimed string
		data          []byte
		want          string // "" for refused
	}{
		{"png claimed png", "image/png", png, "image/png"},
		{"png claimed jpeg", "image/jpeg", png, "image/png"},
		{"png claimed html", "text/html", png, "image/png"},
		{"png claimed nothing", "", png, "image/png"},
		{"unknown bytes claimed heic", "image/heic", heic, "image/heic"},
		{"unknown bytes claimed nothing", "", heic, ""},
		{"unknown bytes claimed svg", "image/svg+xml", heic, ""},
		{"html claimed png", "image/png", []byte("<!DOCTYPE html><html><script>x</script></html>"), ""},
		{"svg claimed svg", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>`), ""},
		{"text claimed gif", "image/gif", []byte("just words"), ""},
	} {
		if got := PictureType(c.data, c.claimed); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
