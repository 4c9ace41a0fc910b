package devstack

import "syscall"

// procCred is the account a child process runs under; nil means ours.
type procCred = syscall.Credential

// procAttr runs a child as cred and ties its lifetime to ours: when the
// parent dies without cleaning up (a killed go test, a SIGKILLed demo) the
// kernel sends the child deathSig, so no server is left holding its port.
// (Go sets the death signal after switching credentials, which would
// otherwise clear it.) Its own process group keeps a terminal's Ctrl-C
// away from it: the parent decides the order in which servers stop.
func procAttr(cred *procCred, deathSig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: deathSig, Setpgid: true}
}
