//go:build !linux

package devstack

import "syscall"

// procCred is unused outside Linux: servers run as the current user.
type procCred struct{}

// procAttr outside Linux: there is no parent-death signal, so a killed
// parent can leave a server behind (every normal exit still stops it).
func procAttr(*procCred, syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
