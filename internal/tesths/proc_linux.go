package tesths

import "syscall"

// childProcAttr ties Dendrite's lifetime to the test binary: if go test is
// killed (timeout, ^C) cleanups never run, and without this the homeserver
// would linger holding its port and data directory.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
