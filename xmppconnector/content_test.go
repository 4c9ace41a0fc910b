package xmppconnector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/config"
)

func TestStripReplyFallback(t *testing.T) {
	start, end := 0, 11
	fb := []fallbackEl{{For: nsReply}}
	fb[0].Bodies = append(fb[0].Bodies, struct {
		Start *int `xml:"start,attr"`
		End   *int `xml:"end,attr"`
	}{&start, &end})
	// 11 code points, not bytes: the quote holds a two-byte rune.
	if got := stripFallback("> héllo wo\nanswer", fb, nsReply); got != "answer" {
		t.Errorf("stripFallback = %q, want %q", got, "answer")
	}
	if got := stripFallback("untouched", fb[:0], nsReply); got != "untouched" {
		t.Errorf("without fallback = %q", got)
	}
}

func TestMessageContentOOB(t *testing.T) {
	m := &message{Body: "https://up.example/f/cat.png", OOB: &oobEl{URL: "https://up.example/f/cat.png"}}
	text, atts := messageContent(m)
	if text != "" || len(atts) != 1 || atts[0].Name != "cat.png" || atts[0].MimeType != "image/png" {
		t.Errorf("content = %q %+v", text, atts)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.yaml")
	yaml := `
bridge: {url: "ws://127.0.0.1:29334", token: 0123456789abcdef0123456789abcdef}
xmpp: {server: "127.0.0.1:5222", tls: plaintext}
avatars: {listen: "127.0.0.1:29351"}
accounts:
  - {jid: "Alice@Example.org/res", password_file: "` + pw + `", matrix_user: "@alice:example.org"}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Accounts[0]
	if a.JID != "alice@example.org" || a.Password != "s3cret" || cfg.Bridge.ConnectorID != "xmpp" || cfg.Avatars.BaseURL != "http://127.0.0.1:29351" ||
		cfg.XMPP.MaxStanzaSize != defaultMaxStanza {
		t.Errorf("config = %+v", cfg)
	}
	bad := strings.Replace(yaml, "tls: plaintext", "tls: maybe", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "xmpp.tls") {
		t.Errorf("bad tls mode: %v", err)
	}
	bad = strings.Replace(yaml, "tls: plaintext", "tls: plaintext, upload_allow: [10.0.0.0/8, \"not a host\"]", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "xmpp.upload_allow[1]") {
		t.Errorf("bad upload_allow entry: %v", err)
	}
	// What an operator gets wrong in the file is refused with the key
	// named, not dropped or replaced by a default.
	for _, tc := range []struct{ from, to, want string }{
		{"connector_id", "conector_id", "field conector_id not found"},
		{"token: 0123456789abcdef0123456789abcdef", "token: CHANGE-ME", "bridge.token is too short (9 characters)"},
		{"accounts:", "log_level: verbose\naccounts:", `log_level "verbose"`},
		{"tls: plaintext", "tls: plaintext, max_stanza_size: 1000", "xmpp.max_stanza_size 1000 is below"},
	} {
		src := strings.Replace(yaml, "bridge: {", "bridge: {connector_id: xmpp, ", 1)
		bad = strings.Replace(src, tc.from, tc.to, 1)
		if bad == src {
			t.Fatalf("%q is not in the test's config", tc.from)
		}
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s → %s: got %v, want an error containing %q", tc.from, tc.to, err, tc.want)
		}
	}
	if MinTokenLength != config.MinSecretLength {
		t.Errorf("MinTokenLength %d, the bridge's MinSecretLength %d", MinTokenLength, config.MinSecretLength)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := os.ReadFile("../xmpp-connector.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.yaml")
	text := strings.Replace(string(cfg), "/etc/dmbridge/alice.xmpp-password", pw, 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	// As it stands, its placeholder token is refused: it must be changed.
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "bridge.token is too short") {
		t.Errorf("example config with its placeholder token: %v", err)
	}
	text = strings.Replace(text, "token: CHANGE-ME", "token: "+strings.Repeat("t", MinTokenLength), 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err != nil {
		t.Errorf("example config: %v", err)
	}
}
