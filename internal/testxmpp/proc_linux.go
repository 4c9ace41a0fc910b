package testxmpp

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// procCred is the account a child process runs under; nil means ours.
type procCred = syscall.Credential

// runAs decides which account Prosody and prosodyctl run under. Prosody
// refuses to run as root, so a root test process hands them to the
// "prosody" account that the Debian package creates; anyone else runs them
// as themselves.
func runAs() (*procCred, error) {
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

// procAttr ties Prosody's lifetime to the test binary: a killed go test
// never runs its cleanups, and a stray Prosody would keep its port.
func procAttr(cred *procCred) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
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
