package privatefile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSQLitePath(t *testing.T) {
	for dsn, want := range map[string]string{
		"file:dmbridge.db?_txlock=immediate": "dmbridge.db",
		"dmbridge.db":                        "dmbridge.db",
		"file:/var/lib/x.db":                 "/var/lib/x.db",
		"file:///var/lib/x.db?cache=shared":  "/var/lib/x.db",
		"file:with%20space.db":               "with space.db",
		":memory:":                           "",
		"file::memory:?cache=shared":         "",
		"file:mem.db?mode=memory":            "",
	} {
		got, ok := SQLitePath(dsn)
		if got != want || ok != (want != "") {
			t.Errorf("SQLitePath(%q) = %q, %v; want %q", dsn, got, ok, want)
		}
	}
}

func TestCreateKeepsExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	if err := os.WriteFile(path, []byte("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if st, _ := os.Stat(path); string(data) != "data" || st.Mode().Perm() != 0o640 {
		t.Errorf("existing file changed: %q %v", data, st.Mode())
	}
	fresh := filepath.Join(t.TempDir(), "y.db")
	if err := Create(fresh); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(fresh); st.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v, want 0600", st.Mode())
	}
}
