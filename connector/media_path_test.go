package connector

import "testing"

func TestMediaPathRoundTrip(t *testing.T) {
	for _, c := range []struct{ server, id string }{
		{"example.org", "abcDEF123"},
		{"example.org:8448", "with/slash"},
		{"[::1]:8008", "100% sure?#"},
	} {
		p := MediaPath(c.server, c.id)
		server, id, ok := ParseMediaPath(p)
		if !ok || server != c.server || id != c.id {
			t.Errorf("ParseMediaPath(%q) = %q %q %v, want %q %q", p, server, id, ok, c.server, c.id)
		}
	}
	for _, bad := range []string{
		MediaPathPrefix, MediaPathPrefix + "server", MediaPathPrefix + "server/", MediaPathPrefix + "/id",
		MediaPathPrefix + "server/id/extra", "/elsewhere/server/id", MediaPathPrefix + "server/%zz",
	} {
		if _, _, ok := ParseMediaPath(bad); ok {
			t.Errorf("ParseMediaPath(%q) accepted a malformed path", bad)
		}
	}
}
