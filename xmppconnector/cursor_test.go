package xmppconnector

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
)

// storingSink stands in for the SDK client: it appends to the store as
// Send does, so effects ride along, or fails when told to.
type storingSink struct {
	store *Store
	mu    sync.Mutex
	fail  error
	sent  []connector.Event
}

func (s *storingSink) Send(ctx context.Context, ev *connector.Event) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	seq, err := s.store.NextSeq(ctx)
	if err != nil {
		return 0, err
	}
	if err := s.store.Append(ctx, seq, ev); err != nil {
		return 0, err
	}
	s.sent = append(s.sent, *ev)
	return seq, nil
}

func (s *storingSink) SendEphemeral(context.Context, *connector.Ephemeral) error { return nil }

// offlineAccount is an account of alice@example.org with a fresh store,
// its events going to a storingSink on that store, and bob@example.org
// already a known contact: that keeps bridge() from asking the (absent)
// server for a vCard.
func offlineAccount(t *testing.T) (*account, *Store, *storingSink) {
	t.Helper()
	a, store, sink := strangersAccount(t)
	if err := store.PutContact(t.Context(), "alice@example.org", "bob@example.org", storedContact{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	return a, store, sink
}

// caughtUpAccount is offlineAccount with a connection (no socket behind
// it) that has finished catching up: where a live message is handled.
func caughtUpAccount(t *testing.T) (*account, *storingSink, *xmppConn) {
	t.Helper()
	a, _, sink := offlineAccount(t)
	conn := &xmppConn{done: make(chan struct{})}
	conn.caughtUp.Store(true)
	return a, sink, conn
}

// strangersAccount is alice's account on a fresh store, sending to a
// storingSink, with no contact stored: everyone who writes is a stranger
// whose profile the account has yet to fetch.
func strangersAccount(t *testing.T) (*account, *Store, *storingSink) {
	t.Helper()
	store := openTestStore(t, filepath.Join(t.TempDir(), "c.db"))
	sink := &storingSink{store: store}
	a := newAccount(&AccountConfig{JID: "alice@example.org", MatrixUser: "@alice:example.org"}, &XMPPConfig{}, store, sink, "", nil, zerolog.Nop())
	return a, store, sink
}

// A live message never moves the archive cursor, not even once the
// connection has caught up: the archive may hold items this client never
// got live (carbons <private/> to another resource), and the next
// catch-up starts at the cursor, so anything it skips is lost for good.
// Live messages are marked seen instead, so catch-up does not repeat them.
func TestLiveStanzaNeverMovesCursor(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, store, sink := offlineAccount(t)
	if err := store.SetCursor(ctx, me, "arch-1"); err != nil {
		t.Fatal(err)
	}
	live := func(stanzaID, body string) *message {
		return &message{From: bob + "/phone", To: me, ID: "x-" + stanzaID, Type: "chat", Body: body,
			StanzaIDs: []stanzaIDEl{{ID: stanzaID, By: me}}}
	}
	cursor := func() string {
		t.Helper()
		c, err := store.Cursor(ctx, me)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	conn := &xmppConn{done: make(chan struct{})}

	a.do(ctx, work{conn: conn, msg: live("arch-9", "live before catch-up")})
	if len(sink.sent) != 1 {
		t.Fatalf("sent %d events, want 1", len(sink.sent))
	}
	if got := cursor(); got != "arch-1" {
		t.Fatalf("cursor = %q after a live message on a connection not caught up; want arch-1", got)
	}
	if seen, err := store.Seen(ctx, me, "arch-9"); err != nil || !seen {
		t.Fatalf("arch-9 seen = %v, %v; want true (catch-up must not bridge it again)", seen, err)
	}

	conn.caughtUp.Store(true)
	a.do(ctx, work{conn: conn, msg: live("arch-10", "live after catch-up")})
	if got := cursor(); got != "arch-1" {
		t.Fatalf("cursor = %q after a live message on a caught-up connection; want arch-1", got)
	}

	// A live message that could not be bridged: the connection is no longer
	// caught up, so the archive is swept again soon.
	sink.fail = errors.New("store full")
	a.do(ctx, work{conn: conn, msg: live("arch-11", "lost?")})
	sink.fail = nil
	if conn.caughtUp.Load() {
		t.Fatal("caughtUp still set after a message failed to bridge")
	}
	if seen, _ := store.Seen(ctx, me, "arch-11"); seen {
		t.Fatal("arch-11 marked seen though it was not bridged")
	}
}

// A sweep queued while another catch-up still waits is not queued again.
func TestQueueCatchUpOnce(t *testing.T) {
	a, _, _ := offlineAccount(t)
	conn := &xmppConn{done: make(chan struct{})}
	a.queueCatchUp(conn)
	a.queueCatchUp(conn)
	if n := len(a.queue); n != 1 {
		t.Fatalf("%d catch-ups queued, want 1", n)
	}
	close(conn.done)
	a.do(t.Context(), a.queue[0])
	a.queueCatchUp(conn)
	if n := len(a.queue); n != 2 {
		t.Fatalf("%d items queued after the first catch-up ran, want 2", n)
	}
}

// An archived message the SDK refuses as too large for a frame is refused
// on every catch-up; failing on it would stop catch-up there for good, so
// it is not retried: a stand-in saying that a message was not bridged goes
// in its place, under its id (before, nothing did).
func TestOversizeArchivedMessageIsSkipped(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	store := openTestStore(t, filepath.Join(t.TempDir(), "c.db"))
	// Never run: Send only stores, and checks the frame size first.
	client := sdk.NewClient(sdk.ClientOptions{URL: "ws://127.0.0.1:1", Store: store, MaxFrameBytes: 4096})
	a := newAccount(&AccountConfig{JID: me, MatrixUser: "@alice:example.org"}, &XMPPConfig{}, store, client, "", nil, zerolog.Nop())
	if err := store.PutContact(ctx, me, bob, storedContact{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	conn := &xmppConn{done: make(chan struct{})}
	item := &mamItem{id: "arch-7", msg: &message{From: bob + "/phone", To: me, ID: "big", Type: "chat", Body: strings.Repeat("x", 8192)}}
	if err := a.handleArchived(ctx, conn, item); err != nil {
		t.Fatalf("handleArchived: %v", err)
	}
	if seen, err := store.Seen(ctx, me, "arch-7"); err != nil || !seen {
		t.Fatalf("arch-7 seen = %v, %v; want true", seen, err)
	}
	if c, _ := store.Cursor(ctx, me); c != "arch-7" {
		t.Fatalf("cursor = %q, want arch-7", c)
	}
	stored, err := store.Unacked(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || !strings.HasPrefix(stored[0].Event.Text, standInPrefix) || stored[0].Event.ID != "arch-7" ||
		stored[0].Event.Sender == nil || stored[0].Event.Sender.ID != bob {
		t.Fatalf("stored %+v, want only a stand-in from bob under arch-7", stored)
	}
}

// While connected, the archive is swept every archive_sweep, so a message
// that reached only the archive does not wait for the next reconnect.
func TestServeSweepsArchive(t *testing.T) {
	a, _, conn := caughtUpAccount(t)
	a.xcfg.ArchiveSweep = 10 * time.Millisecond
	served := make(chan bool)
	go func() { served <- a.serve(t.Context(), conn) }()
	deadline := time.Now().Add(5 * time.Second)
	for !conn.catchUpQueued.Load() {
		if time.Now().After(deadline) {
			t.Fatal("no archive sweep was queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(conn.done)
	if !<-served {
		t.Fatal("serve said the context ended when the connection did")
	}
	a.qmu.Lock()
	defer a.qmu.Unlock()
	if len(a.queue) != 1 || !a.queue[0].catchUp {
		t.Fatalf("queue = %+v, want one catch-up", a.queue)
	}
}
