//go:build !unix

package main

import (
	"os"
	"os/exec"
)

func ownGroup(*exec.Cmd) {}

// interrupt cannot ask politely without process groups; the grace period
// in terminate is then simply skipped.
func interrupt(p *os.Process) error { return p.Kill() }

func kill(p *os.Process) { _ = p.Kill() }
