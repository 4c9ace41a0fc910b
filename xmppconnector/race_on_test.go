//go:build race

package xmppconnector

// raceEnabled tells allocation tests that the race detector changes what
// the runtime and standard library allocate.
const raceEnabled = true
