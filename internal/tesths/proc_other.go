//go:build !linux

package tesths

import "syscall"

// childProcAttr: outside Linux there is no parent-death signal, so a
// killed test run can leave a Dendrite behind; cleanups still stop it in
// every normal exit.
func childProcAttr() *syscall.SysProcAttr { return nil }
