package devstack

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
)

// prosodyAccount decides which account Prosody and prosodyctl run under.
// Prosody refuses to run as root, so a root caller hands them to the
// "prosody" account that the Debian package creates; anyone else runs
// them as themselves.
func prosodyAccount() (*procCred, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("prosody")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the prosody account (apt-get install -y prosody): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("prosody uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("prosody gid %q: %w", u.Gid, err)
	}
	return &procCred{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// handOver gives the whole tree under dir to the account Prosody runs as.
func handOver(dir string, cred *procCred) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(cred.Uid), int(cred.Gid))
	})
}

// ProsodyCanReach reports whether Prosody, running as the account
// prosodyAccount picks, can get to dir: every directory above it must be
// searchable by others (a checkout under /root is not).
func ProsodyCanReach(dir string) bool {
	if os.Geteuid() != 0 {
		return true
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}
