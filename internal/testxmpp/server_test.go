package testxmpp

import (
	"net"
	"testing"
)

func TestStartRegisterRestart(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	srv.Register(t, "alice", "alice-pw")
	srv.Restart(t)
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatalf("dial after restart: %v", err)
	}
	_ = conn.Close()
}
