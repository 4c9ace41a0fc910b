package bridge_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// Fault runs: each TestFault* runs a short version in every `go test`, and
// the size issue 9 asks for with DMBRIDGE_FAULTS=full (`make faults`). Each
// logs one "FAULT" line with what it sent and what the room or the
// connector ended up with.

func faultsFull() bool { return os.Getenv("DMBRIDGE_FAULTS") == "full" }

// faultSize is short in normal runs and full under `make faults`.
func faultSize(short, full int) int {
	if faultsFull() {
		return full
	}
	return short
}

// timelineBodies reads the whole room timeline as alice, through /messages,
// and counts each m.room.message body.
func (s *stack) timelineBodies(ctx context.Context, roomID id.RoomID) (map[string]int, error) {
	return s.pagedBodies(ctx, roomID, mautrix.DirectionBackward, 500)
}

func (s *stack) pagedBodies(ctx context.Context, roomID id.RoomID, dir mautrix.Direction, limit int) (map[string]int, error) {
	bodies, err := pageBodies(ctx, s.alice, roomID, dir, limit)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, b := range bodies {
		counts[b]++
	}
	return counts, nil
}

// pageBodies reads the whole room timeline through /messages as c and lists
// every m.room.message body in the order the pages gave them.
func pageBodies(ctx context.Context, c *mautrix.Client, roomID id.RoomID, dir mautrix.Direction, limit int) ([]string, error) {
	var bodies []string
	from := ""
	for {
		resp, err := c.Messages(ctx, roomID, from, "", dir, nil, limit)
		if err != nil {
			return nil, fmt.Errorf("read timeline of %s: %w", roomID, err)
		}
		for _, evt := range resp.Chunk {
			if evt.Type != event.EventMessage {
				continue
			}
			_ = evt.Content.ParseRaw(evt.Type)
			if msg := evt.Content.AsMessage(); msg != nil {
				bodies = append(bodies, msg.Body)
			}
		}
		if resp.End == "" || len(resp.Chunk) == 0 || resp.End == from {
			return bodies, nil
		}
		from = resp.End
	}
}

// faultTally is one row of the fault table.
type faultTally struct {
	Fault, DB                       string
	Sent, Delivered, Lost, Doubled  int
	Unexpected                      int // arrived but never sent
	unexpectedSample, missingSample []string
}

// tally compares what was sent with what arrived (body → count).
func tally(fault, db string, sent []string, got map[string]int) faultTally {
	r := faultTally{Fault: fault, DB: db, Sent: len(sent)}
	want := map[string]bool{}
	for _, b := range sent {
		want[b] = true
		switch n := got[b]; {
		case n == 0:
			r.Lost++
			if len(r.missingSample) < 5 {
				r.missingSample = append(r.missingSample, b)
			}
		default:
			r.Delivered++
			r.Doubled += n - 1
		}
	}
	for b, n := range got {
		if !want[b] {
			r.Unexpected += n
			if len(r.unexpectedSample) < 5 {
				r.unexpectedSample = append(r.unexpectedSample, b)
			}
		}
	}
	return r
}

// check logs the FAULT line and fails the test unless it is 0 lost, 0 doubled.
func (r faultTally) check(t *testing.T) {
	t.Helper()
	t.Logf("FAULT %s db=%s sent=%d delivered=%d lost=%d doubled=%d unexpected=%d",
		r.Fault, r.DB, r.Sent, r.Delivered, r.Lost, r.Doubled, r.Unexpected)
	if r.Lost != 0 || r.Doubled != 0 {
		t.Errorf("%s: %d lost (e.g. %q), %d doubled", r.Fault, r.Lost, r.missingSample, r.Doubled)
	}
}

// explainMissing tells a lost message from one that only a view of the
// room misses: it logs whether alice's /sync saw each missing body, and
// whether /messages shows it when paged differently.
func (s *stack) explainMissing(t *testing.T, roomID id.RoomID, r faultTally) {
	t.Helper()
	if len(r.missingSample) == 0 {
		return
	}
	synced := map[string]int{}
	for _, b := range bodies(s.messagesIn(roomID)) {
		synced[b]++
	}
	views := map[string]map[string]int{"sync": synced}
	for _, v := range []struct {
		name  string
		dir   mautrix.Direction
		limit int
	}{{"messages b/50", mautrix.DirectionBackward, 50}, {"messages b/1000", mautrix.DirectionBackward, 1000}} {
		got, err := s.pagedBodies(context.Background(), roomID, v.dir, v.limit)
		if err != nil {
			t.Logf("%s: %v", v.name, err)
			continue
		}
		views[v.name] = got
	}
	for _, b := range r.missingSample {
		line := fmt.Sprintf("missing %q:", b)
		for name, got := range views {
			line += fmt.Sprintf(" %s=%d", name, got[b])
		}
		t.Log(line)
	}
}

// roomCounts counts each body in the room as alice sees it, through
// /messages and through her /sync, taking the larger count of the two. The
// two views differ on Dendrite v0.15.2: when the user and a ghost write at
// the same moment, /messages (at any page size) can leave out an event that
// /sync delivered once. Such bodies are returned as gaps and logged; they
// are neither lost nor doubled.
func (s *stack) roomCounts(ctx context.Context, roomID id.RoomID) (map[string]int, []string, error) {
	got, err := s.timelineBodies(ctx, roomID)
	if err != nil {
		return nil, nil, err
	}
	synced := map[string]int{}
	for _, b := range bodies(s.messagesIn(roomID)) {
		synced[b]++
	}
	var gaps []string
	for b, n := range synced {
		if got[b] == 0 {
			gaps = append(gaps, b)
		}
		got[b] = max(got[b], n)
	}
	return got, gaps, nil
}

// waitTimeline waits until every sent body is in the room (or the timeout
// passes), then lets stragglers land and returns the final count.
func (s *stack) waitTimeline(t *testing.T, roomID id.RoomID, sent []string, timeout time.Duration) map[string]int {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		got, _, err := s.roomCounts(ctx, roomID)
		if err == nil {
			missing := 0
			for _, b := range sent {
				if got[b] == 0 {
					missing++
				}
			}
			if missing == 0 || time.Now().After(deadline) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timeline: %v", err)
		}
		time.Sleep(time.Second)
	}
	time.Sleep(2 * time.Second)
	got, gaps, err := s.roomCounts(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) > 0 {
		t.Logf("FAULT-NOTE /messages left out %d bodies that /sync delivered: %q", len(gaps), gaps)
	}
	return got
}

// dropProxy sits between the fake connector and the bridge and can cut the
// connection abruptly: no close frame, sometimes in the middle of a frame,
// sometimes with a TCP reset.
type dropProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	cur    *proxiedConn
	conns  atomic.Int32
}

type proxiedConn struct {
	client, server net.Conn
	armed          atomic.Bool
	dead           chan struct{}
	once           sync.Once
}

func newDropProxy(t *testing.T, target string) *dropProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{t: t, ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close() })
	go p.accept()
	return p
}

func (p *dropProxy) addr() string { return p.ln.Addr().String() }

func (p *dropProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &proxiedConn{client: client, server: server, dead: make(chan struct{})}
		p.mu.Lock()
		p.cur = c
		p.mu.Unlock()
		p.conns.Add(1)
		go c.pipe(server, client)
		go c.pipe(client, server)
	}
}

// pipe copies src to dst; once armed, it forwards a random prefix of the
// next chunk and cuts the connection there.
func (c *proxiedConn) pipe(dst, src net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if c.armed.Load() {
				_, _ = dst.Write(chunk[:rand.IntN(n+1)])
				c.kill()
				return
			}
			if _, werr := dst.Write(chunk); werr != nil {
				c.kill()
				return
			}
		}
		if err != nil {
			c.kill()
			return
		}
	}
}

// kill closes both sides without a websocket close; half the time with a
// TCP reset instead of a FIN.
func (c *proxiedConn) kill() {
	c.once.Do(func() {
		if rand.IntN(2) == 0 {
			for _, conn := range []net.Conn{c.client, c.server} {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
			}
		}
		_ = c.client.Close()
		_ = c.server.Close()
		close(c.dead)
	})
}

// drop cuts the current connection at the next chunk that crosses it, or
// after at most idle if nothing does. It reports false if there was no live
// connection to cut.
func (p *dropProxy) drop(idle time.Duration) bool {
	p.mu.Lock()
	c := p.cur
	p.mu.Unlock()
	if c == nil {
		return false
	}
	select {
	case <-c.dead:
		return false
	default:
	}
	c.armed.Store(true)
	select {
	case <-c.dead:
	case <-time.After(idle):
		c.kill()
	}
	return true
}

// backgroundStream is a contact sending numbered messages at a steady pace
// while a fault is injected.
type backgroundStream struct {
	client     *sdk.Client
	stop, done chan struct{}
	sent       []string
	last       int64
}

// startStream opens the portal with a first message, then streams from
// bob until finish, at least minimum and at most maximum messages.
func (s *stack) startStream(ctx context.Context, t *testing.T, f *fakeConnector, prefix string, pace time.Duration, minimum, maximum int) (*backgroundStream, id.RoomID) {
	f.send(textFrom("bob@network", "first", "first"))
	roomID := s.roomOf("bob@network")
	b := &backgroundStream{client: f.client, stop: make(chan struct{}), done: make(chan struct{}), sent: []string{"first"}}
	go func() {
		defer close(b.done)
		for i := 1; i <= maximum; i++ {
			if i > minimum {
				select {
				case <-b.stop:
					return
				default:
				}
			}
			body := fmt.Sprintf("%s %d", prefix, i)
			seq, err := f.client.Send(ctx, textFrom("bob@network", fmt.Sprintf("%s-%d", prefix, i), body))
			if err != nil {
				t.Errorf("send %q: %v", body, err)
				return
			}
			b.sent, b.last = append(b.sent, body), seq
			time.Sleep(pace)
		}
	}()
	return b, roomID
}

// finish stops the stream, waits until the bridge acked all of it, and
// returns every body sent. The wait is bounded: a bridge that lost events
// it had acked asks for them again and never acks the rest, and that
// should fail the test, not run it into its timeout.
func (b *backgroundStream) finish(ctx context.Context, t *testing.T) []string {
	t.Helper()
	close(b.stop)
	<-b.done
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := b.client.WaitAcked(ctx, b.last); err != nil {
		t.Fatalf("wait for the last ack: %v", err)
	}
	return b.sent
}

// TestFaultConnectorDrops cuts the connector's TCP connection abruptly, at
// random points (mid-frame, with FIN or RST, never a close frame), while a
// contact streams messages: every message shows exactly once.
func TestFaultConnectorDrops(t *testing.T) {
	drops := faultSize(10, 100)
	testdb.EachParallel(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		proxy := newDropProxy(t, s.cfg.Connector.Listen)
		real := s.cfg.Connector.Listen
		s.cfg.Connector.Listen = proxy.addr()
		f := s.connectFake(sdk.NewMemoryStore())
		s.cfg.Connector.Listen = real
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		stream, roomID := s.startStream(ctx, t, f, "drop", 15*time.Millisecond, drops*3, drops*40)
		cut := 0
		for cut < drops {
			tesths.WaitFor(t, time.Minute, "the connector back", func() (bool, error) { return f.client.Connected(), nil })
			time.Sleep(time.Duration(rand.IntN(250)) * time.Millisecond)
			if proxy.drop(150 * time.Millisecond) {
				cut++
			}
		}
		sent := stream.finish(ctx, t)
		got := s.waitTimeline(t, roomID, sent, 3*time.Minute)
		r := tally(fmt.Sprintf("connector drops x%d (%d connections)", cut, proxy.conns.Load()), target.Name, sent, got)
		r.check(t)
		s.explainMissing(t, roomID, r)
	})
}
