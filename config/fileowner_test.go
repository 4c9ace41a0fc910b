//go:build unix

package config

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestRewriteKeepsOperatorsAccess: -g rewrites registration.yaml (and the
// config) in place. An operator who gave the file to the service user and
// let the homeserver's group read it keeps both; only others lose access.
// The owner part needs root, as -g run by an operator with sudo has.
func TestRewriteKeepsOperatorsAccess(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	reg := cfg.GenerateRegistration()
	path := filepath.Join(t.TempDir(), "registration.yaml")
	if err := os.WriteFile(path, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	asRoot := os.Geteuid() == 0
	const nobody = 65534
	if asRoot {
		if err := os.Chown(path, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteRegistration(path, reg); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o640 {
		t.Errorf("mode %v, want the operator's 0640 kept", got)
	}
	st := info.Sys().(*syscall.Stat_t)
	if asRoot && (st.Uid != nobody || st.Gid != nobody) {
		t.Errorf("owner %d:%d, want the operator's %d:%d kept", st.Uid, st.Gid, nobody, nobody)
	}
	if !asRoot {
		t.Log("not root: the owner part is not checked")
	}
}
