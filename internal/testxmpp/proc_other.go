//go:build !linux

package testxmpp

import "syscall"

// procCred is unused outside Linux: Prosody runs as the current user.
type procCred struct{}

// Outside Linux there is neither a prosody account convention nor a
// parent-death signal: a killed test run can leave Prosody behind (normal
// exits still stop it).
func runAs() (*procCred, error)               { return nil, nil }
func procAttr(*procCred) *syscall.SysProcAttr { return nil }
func handOver(string, *procCred) error        { return nil }
