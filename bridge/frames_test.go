package bridge_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
	"github.com/dmbridge/dmbridge/internal/rawconn"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// rawHello connects a second connector ("raw") that breaks the rules, next
// to the well-behaved fake, and returns it after the handshake.
func (s *stack) rawHello(t *testing.T) *rawconn.Conn {
	t.Helper()
	conn, _, err := rawconn.Dial(context.Background(), "ws://"+s.cfg.Connector.Listen+connector.Path, testConnectorToken, []string{connector.Subprotocol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	hello := helloFor(connector.Login{ID: "raw-login", MatrixUser: string(s.alice.UserID)})
	hello.Connector.ID = "raw"
	if err = conn.WriteFrame(connector.Frame{Type: connector.TypeHello}, hello); err != nil {
		t.Fatal(err)
	}
	if f, err := conn.ReadFrame(5 * time.Second); err != nil || f.Type != connector.TypeWelcome {
		t.Fatalf("raw hello: %+v, %v", f, err)
	}
	return conn
}

func expectErr(t *testing.T, conn *rawconn.Conn, code string) {
	t.Helper()
	for {
		f, err := conn.ReadFrame(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for err %s: %v", code, err)
		}
		if f.Type == connector.TypeAck {
			continue
		}
		if f.Type != connector.TypeErr || f.Error == nil || f.Error.Code != code {
			t.Fatalf("got %+v, want err %s", f, code)
		}
		return
	}
}

// TestBadConnectorInput: each kind of bad input gets its documented answer,
// nothing is stored for it, and the well-behaved connector keeps working.
func TestBadConnectorInput(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	good := s.connectFake(nil)
	url := "ws://" + s.cfg.Connector.Listen + connector.Path

	_, resp, err := rawconn.Dial(context.Background(), url, "wrong-token", []string{connector.Subprotocol})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: resp %v err %v, want HTTP 401", resp, err)
	}
	_, resp, err = rawconn.Dial(context.Background(), url, testConnectorToken, []string{"other.v9"})
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown subprotocol: resp %v err %v, want HTTP 400", resp, err)
	}

	raw := s.rawHello(t)
	if err := raw.WriteText([]byte("this is not json")); err != nil {
		t.Fatal(err)
	}
	expectErr(t, raw, connector.ErrBadFrame)
	// An event without its chat and sender.
	if err := raw.WriteFrame(connector.Frame{Type: connector.TypeEvent, Seq: 1}, map[string]any{"kind": "message", "login": "raw-login", "id": "x"}); err != nil {
		t.Fatal(err)
	}
	expectErr(t, raw, connector.ErrBadFrame)
	if err := raw.WriteFrame(connector.Frame{Type: connector.TypeEvent, Seq: 1}, map[string]any{"kind": "hologram", "login": "raw-login"}); err != nil {
		t.Fatal(err)
	}
	expectErr(t, raw, connector.ErrUnknownKind)
	// A gap in the stream is refused, not acked.
	if err := raw.WriteFrame(connector.Frame{Type: connector.TypeEvent, Seq: 5}, textFrom("eve@network", "e1", "skipped ahead")); err != nil {
		t.Fatal(err)
	}
	expectErr(t, raw, connector.ErrBadSeq)
	if err := raw.WriteText([]byte(`{"type":"event","seq":2,"data":{"kind":"message","text":"` + strings.Repeat("x", 2<<20) + `"}}`)); err != nil {
		t.Fatal(err)
	}
	// Acks of the earlier frames may still be on their way before the close.
	for {
		f, err := raw.ReadFrame(5 * time.Second)
		if err == nil && f.Type == connector.TypeAck {
			continue
		}
		if connws.CloseCode(err) != 1009 {
			t.Errorf("oversize frame: %+v, %v, want close 1009", f, err)
		}
		break
	}

	var inbox int
	if err := s.br.DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM inbox WHERE connector_id='raw'").Scan(&inbox); err != nil {
		t.Fatal(err)
	}
	if inbox != 0 {
		t.Errorf("bad input stored %d inbox rows", inbox)
	}
	// The good connector was never disturbed.
	good.send(textFrom("bob@network", "m1", "still here"))
	s.waitMessage(s.roomOf("bob@network"), "still here")
}

// TestLoginOfUnpermittedUserRefused: a login owned by a user the permissions
// do not allow gets M_FORBIDDEN, and nothing is created for it.
func TestLoginOfUnpermittedUserRefused(t *testing.T) {
	s := newStack(t, testdb.SQLite(t), stackOptions{permissions: map[string]config.Level{
		"localhost": config.LevelUser, "@mallory:localhost": config.LevelBlock,
	}})
	conn, _, err := rawconn.Dial(context.Background(), "ws://"+s.cfg.Connector.Listen+connector.Path, testConnectorToken, []string{connector.Subprotocol})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hello := helloFor(connector.Login{ID: "mallory-login", MatrixUser: "@mallory:localhost"})
	if err = conn.WriteFrame(connector.Frame{Type: connector.TypeHello}, hello); err != nil {
		t.Fatal(err)
	}
	sawForbidden, sawWelcome := false, false
	for !(sawForbidden && sawWelcome) {
		f, err := conn.ReadFrame(5 * time.Second)
		if err != nil {
			t.Fatalf("after hello: %v (forbidden %v, welcome %v)", err, sawForbidden, sawWelcome)
		}
		switch {
		case f.Type == connector.TypeWelcome:
			sawWelcome = true
		case f.Type == connector.TypeErr && f.Error != nil && f.Error.Code == connector.ErrForbidden:
			sawForbidden = true
		}
	}
	ev := textFrom("bob@network", "m1", "hi mallory")
	ev.Login = "mallory-login"
	if err = conn.WriteFrame(connector.Frame{Type: connector.TypeEvent, Seq: 1}, ev); err != nil {
		t.Fatal(err)
	}
	expectErr(t, conn, connector.ErrForbidden)
	time.Sleep(300 * time.Millisecond)
	ctx := context.Background()
	for _, table := range []string{"login", "portal", "inbox", "ghost"} {
		var n int
		if err := s.br.DB.QueryRow(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("refused login left %d rows in %s", n, table)
		}
	}
}
