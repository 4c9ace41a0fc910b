package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// saveAndReload writes src to a file, saves fresh tokens into it and returns
// the new file content and the config as loaded from it.
func saveAndReload(t *testing.T, src string) (string, *Config) {
	t.Helper()
	path := worldReadable(t, "config.yaml", src)
	cfg, err := saveTokens(t, path, src, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	wantPrivate(t, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	reloaded, _, err := parse(path, data, testEnv(map[string]string{"DMBRIDGE_AS_TOKEN": "", "DMBRIDGE_HS_TOKEN": ""}), modeRun)
	if err != nil {
		t.Fatalf("saved config does not load: %v\n%s", err, data)
	}
	if reloaded.Appservice.ASToken != cfg.Appservice.ASToken || reloaded.Appservice.HSToken != cfg.Appservice.HSToken {
		t.Errorf("tokens not saved:\n%s", data)
	}
	return string(data), cfg
}

func TestSaveTokensPreservesTextExactly(t *testing.T) {
	src := string(ExampleConfig())
	got, cfg := saveAndReload(t, src)
	want := strings.Replace(src, `  as_token: ""`, `  as_token: "`+cfg.Appservice.ASToken+`"`, 1)
	want = strings.Replace(want, `  hs_token: ""`, `  hs_token: "`+cfg.Appservice.HSToken+`"`, 1)
	if got != want {
		t.Errorf("only the token values should change; got:\n%s", got)
	}
}

func TestSaveTokensLayouts(t *testing.T) {
	tests := []struct {
		name      string
		tokens    string // the as_token/hs_token lines in the source
		exactText bool   // whether the rest of the file must stay byte-identical
	}{
		{"plain values", "  as_token: old1 # keep me\n  hs_token: old2\n", true},
		{"single quotes", "  as_token: 'old1'\n  hs_token: ''\n", true},
		{"empty values", "  as_token:\n  hs_token:   # comment\n", true},
		{"null values", "  as_token: ~\n  hs_token: null\n", true},
		{"missing keys", "", true},
		{"block scalar", "  as_token: |\n    old1\n  hs_token: >-\n    old2\n", false},
		{"escapes", "  as_token: \"a\\tb\"\n  hs_token: \"x\"\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "# top comment\n\n" + strings.Replace(minimalYAML, "  id: dmbridge\n", "  id: dmbridge\n"+tt.tokens, 1) +
				"\n# trailing comment\n"
			got, cfg := saveAndReload(t, src)
			for _, keep := range []string{"# top comment", "# trailing comment"} {
				if !strings.Contains(got, keep) {
					t.Errorf("lost %q:\n%s", keep, got)
				}
			}
			if strings.Contains(tt.tokens, "# keep me") && !strings.Contains(got, cfg.Appservice.ASToken+" # keep me") {
				t.Errorf("lost the line comment:\n%s", got)
			}
			if tt.exactText {
				if stripTokenLines(got) != strings.Replace(src, tt.tokens, "", 1) {
					t.Errorf("text outside the token lines changed:\n%s", got)
				}
				if tt.tokens == "" && !strings.Contains(got, "  address: http://127.0.0.1:29333\n  as_token: ") {
					t.Errorf("missing keys should follow the section's first key:\n%s", got)
				}
			}
		})
	}
}

func TestSaveTokensRefusesEnvironmentTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(minimalYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := saveTokens(t, path, minimalYAML, testEnv(nil))
	if err == nil || !strings.Contains(err.Error(), "DMBRIDGE_AS_TOKEN") {
		t.Errorf("SaveTokens with DMBRIDGE_AS_TOKEN set: err = %v", err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != minimalYAML {
		t.Error("file changed although SaveTokens failed")
	}
}

func TestSaveTokensFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.yaml")
	link := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(target, []byte(minimalYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Skip("symlinks unsupported:", err)
	}
	cfg, err := saveTokens(t, link, minimalYAML, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the symlink was replaced by a file")
	}
	data, _ := os.ReadFile(target)
	if !strings.Contains(string(data), cfg.Appservice.ASToken) {
		t.Error("the link target did not get the tokens")
	}
}

func stripTokenLines(s string) string {
	var out []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "  as_token:") && !strings.HasPrefix(l, "  hs_token:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

func TestSavePickleKeyOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	orig := "homeserver:\n  domain: example.org\n# keep me\nencryption:\n  allow: true\n  pickle_key: \"\"\n"
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Config{Path: path}
	if err := c.SavePickleKey(); err != nil {
		t.Fatal(err)
	}
	first := c.Encryption.PickleKey
	data, _ := os.ReadFile(path)
	want := strings.Replace(orig, `pickle_key: ""`, `pickle_key: "`+first+`"`, 1)
	if len(first) < 40 || string(data) != want {
		t.Fatalf("pickle key %q, file:\n%s", first, data)
	}
	if err := c.SavePickleKey(); err != nil || c.Encryption.PickleKey != first {
		t.Fatalf("second call changed the key: %v %q", err, c.Encryption.PickleKey)
	}
}
