package config

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeFileAtomic replaces path with data so that a crash or a full disk
// never leaves a half-written config or registration behind, and so that the
// file ends up with perm even if it existed with a looser mode (os.WriteFile
// keeps an existing file's mode): a file others could read is made private.
// What an operator set on an existing file for a reader of its own is kept:
// its owner and group (-g run as root must not leave the service user a
// config it cannot read), and read access for the group alone (the
// homeserver's group reading registration.yaml).
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	// Write next to the symlink's target rather than replacing the link.
	if resolved, evalErr := filepath.EvalSymlinks(path); evalErr == nil {
		path = resolved
	}
	var old os.FileInfo
	if info, statErr := os.Stat(path); statErr == nil {
		old = info
		if mode := info.Mode().Perm(); mode&0o004 == 0 && mode&0o040 != 0 {
			perm |= 0o040
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if old != nil {
		if err := keepOwner(tmp, old); err != nil {
			_ = tmp.Close()
			return fmt.Errorf("keeping the owner of %s: %w", path, err)
		}
	}
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("setting mode of %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
