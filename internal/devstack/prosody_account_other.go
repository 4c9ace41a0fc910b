//go:build !linux

package devstack

// Outside Linux Prosody runs as the current user.
func prosodyAccount() (*procCred, error) { return nil, nil }
func handOver(string, *procCred) error   { return nil }
func ProsodyCanReach(dir string) bool    { return true }
