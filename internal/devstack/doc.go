// Package devstack runs the real servers a local dmbridge stack needs:
// Dendrite (built from the pinned tools module and cached), Prosody, and
// the accounts on both. It has no test dependencies so that the demo
// (cmd/dmbridge-demo) and the test harnesses (internal/tesths,
// internal/testxmpp) start the servers the same way: what the demo shows
// is what the tests exercise.
//
// Every server gets its own directory and port; nothing is shared between
// instances, so several can run side by side.
package devstack
