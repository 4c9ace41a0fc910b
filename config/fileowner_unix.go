//go:build unix

package config

import (
	"errors"
	"os"
	"syscall"
)

// keepOwner gives f the owner and group of the file it replaces. Only root
// can give a file away; anyone else writes files that are their own, so a
// refusal there changes nothing and is not an error.
func keepOwner(f *os.File, old os.FileInfo) error {
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, os.ErrPermission) {
		return err
	}
	return nil
}
