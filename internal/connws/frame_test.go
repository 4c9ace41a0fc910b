package connws

import (
	"testing"

	"github.com/dmbridge/dmbridge/connector"
)

func TestNormalizeURL(t *testing.T) {
	cases := map[string]string{
		"ws://h:1":          "ws://h:1" + connector.Path,
		"http://h:1/":       "ws://h:1" + connector.Path,
		"https://h":         "wss://h" + connector.Path,
		"ws://h:1/custom/x": "ws://h:1/custom/x",
	}
	for in, want := range cases {
		if got, err := NormalizeURL(in); err != nil || got != want {
			t.Errorf("normalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
