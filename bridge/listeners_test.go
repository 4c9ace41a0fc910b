package bridge_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestListenersDropSilentClients: a client that opens a connection to the
// appservice listener (homeserver and provisioning) or the connector
// listener and never finishes its request headers is disconnected after
// appservice.ReadHeaderTimeout instead of holding the connection forever.
func TestListenersDropSilentClients(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	addrs := map[string]string{
		"appservice": fmt.Sprintf("%s:%d", s.cfg.Appservice.Hostname, s.cfg.Appservice.Port),
		"connector":  s.cfg.Connector.Listen,
	}
	errs := make(chan error, len(addrs))
	for name, addr := range addrs {
		go func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				return
			}
			defer conn.Close()
			start := time.Now()
			if _, err = io.WriteString(conn, "GET /_matrix/app/v1/ping HTTP/1.1\r\nHost: bridge\r\n"); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				return
			}
			_ = conn.SetReadDeadline(time.Now().Add(appservice.ReadHeaderTimeout + 15*time.Second))
			_, err = io.Copy(io.Discard, conn)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				errs <- fmt.Errorf("%s: a client that never finished its headers was still connected after %s", name, time.Since(start).Round(time.Second))
				return
			}
			t.Logf("%s: silent client dropped after %s", name, time.Since(start).Round(100*time.Millisecond))
			errs <- nil
		}()
	}
	for range addrs {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestHTTPServerLimits: every listener built by NewHTTPServer closes idle
// keep-alive connections and bounds header size and time.
func TestHTTPServerLimits(t *testing.T) {
	srv := appservice.NewHTTPServer(nil)
	if srv.ReadHeaderTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Errorf("server limits: header %s, idle %s, max header %d", srv.ReadHeaderTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}
