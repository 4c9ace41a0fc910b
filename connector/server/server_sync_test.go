package server_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
)

// syncStore is a batchStore whose batches are stored undurably: each is
// made durable only by the next Sync, which waits for hold (if set) the
// first time and fails when fail is set. durableUpTo is what the Syncs
// that returned made durable.
type syncStore struct {
	batchStore
	hold chan struct{}
	fail bool

	smu         sync.Mutex
	storedUpTo  int64
	durableUpTo int64
	syncs       int
	syncing     chan struct{} // closed when the first Sync starts
}

func (s *syncStore) StoreBatch(ctx context.Context, id string, items []server.Accepted) (bool, error) {
	if err := s.batchStore.AcceptBatch(ctx, id, items); err != nil {
		return false, err
	}
	s.smu.Lock()
	s.storedUpTo = items[len(items)-1].Seq
	s.smu.Unlock()
	return false, nil
}

func (s *syncStore) Sync(ctx context.Context, id string) error {
	s.smu.Lock()
	upTo := s.storedUpTo
	s.syncs++
	first := s.syncs == 1
	s.smu.Unlock()
	if first {
		close(s.syncing)
		if s.hold != nil {
			select {
			case <-s.hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if s.fail {
		return errors.New("log disk on fire")
	}
	s.smu.Lock()
	s.durableUpTo = max(s.durableUpTo, upTo)
	s.smu.Unlock()
	return nil
}

func (s *syncStore) durable() int64 {
	s.smu.Lock()
	defer s.smu.Unlock()
	return s.durableUpTo
}

func newSyncHarness(t *testing.T, ss *syncStore) *connectortest.Harness {
	ss.syncing = make(chan struct{})
	h := connectortest.NewHarness(t, func(o *server.Options) {
		ss.Store = connectortest.NewStore(t)
		o.Store = ss
		o.AckDelay = time.Millisecond
	})
	h.Store = ss.Store
	return h
}

// TestNextBatchStoredWhileOneIsSynced: with a SyncStore the events that
// arrive while a batch is made durable are stored at once, not after the
// Sync (so that their way to the homeserver does not wait for the earlier
// batch's disk write), and nothing is acked before a Sync covered it.
func TestNextBatchStoredWhileOneIsSynced(t *testing.T) {
	ss := &syncStore{hold: make(chan struct{})}
	h := newSyncHarness(t, ss)
	// Before the harness's cleanup, which waits for the Sync, if the test
	// fails while it is held.
	release := sync.OnceFunc(func() { close(ss.hold) })
	t.Cleanup(release)
	rc, _ := h.Connect(t, "c")
	in := frames(rc)

	connectortest.SendEvent(t, rc, 1, connectortest.Message(1))
	select {
	case <-ss.syncing:
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch was never synced")
	}
	connectortest.SendMessages(t, rc, 2, 6)
	connectortest.Eventually(t, "events 2-6 stored while event 1 is synced", func() bool {
		return len(h.Store.Snapshot("c")) == 6
	})
	quiet := time.After(100 * time.Millisecond)
wait:
	for {
		select {
		case f := <-in:
			t.Fatalf("got %+v while no Sync had returned", f)
		case <-quiet:
			break wait
		}
	}

	release()
	for f := range in {
		if f.Type != connector.TypeAck {
			t.Fatalf("unexpected frame %+v", f)
		}
		if d := ss.durable(); f.Seq > d {
			t.Fatalf("acked %d, but only %d was made durable", f.Seq, d)
		}
		if f.Seq == 6 {
			break
		}
	}
}

// TestFailedSyncAcksNothingAndCloses: a Sync that fails closes the
// connection as a failed store does, and what it should have made durable
// is not acked.
func TestFailedSyncAcksNothingAndCloses(t *testing.T) {
	ss := &syncStore{fail: true}
	h := newSyncHarness(t, ss)
	rc, _ := h.Connect(t, "c")
	connectortest.SendMessages(t, rc, 1, 5)
	if maxAck := highestAckBeforeClose(t, rc, 1011); maxAck != 0 {
		t.Fatalf("acked %d after every Sync failed", maxAck)
	}
}

// TestSyncsAreSpacedOut: events stored one at a time in quick succession
// share Syncs, at most one per half ack delay, and are all acked; the
// first, after a quiet time, is synced at once.
func TestSyncsAreSpacedOut(t *testing.T) {
	ss := &syncStore{}
	ss.syncing = make(chan struct{})
	h := connectortest.NewHarness(t, func(o *server.Options) {
		ss.Store = connectortest.NewStore(t)
		o.Store = ss
		o.AckDelay = 400 * time.Millisecond
	})
	h.Store = ss.Store
	rc, _ := h.Connect(t, "c")
	start := time.Now()
	connectortest.SendEvent(t, rc, 1, connectortest.Message(1))
	select {
	case <-ss.syncing:
	case <-time.After(10 * time.Second):
		t.Fatal("the first event was never synced")
	}
	if waited := time.Since(start); waited > 150*time.Millisecond {
		t.Errorf("the first Sync came %v after the event, want it at once", waited)
	}
	for seq := int64(2); seq <= 10; seq++ {
		connectortest.SendEvent(t, rc, seq, connectortest.Message(int(seq)))
		connectortest.Eventually(t, "stored", func() bool { return len(h.Store.Snapshot("c")) == int(seq) })
	}
	connectortest.WaitAck(t, rc, 10)
	ss.smu.Lock()
	syncs := ss.syncs
	ss.smu.Unlock()
	// The first Sync, then at most one per 200 ms (and one more for the
	// interval the last batch fell in): 3 when the batches take under
	// 200 ms, as they do but on a very slow machine.
	elapsed := time.Since(start)
	if most := 2 + int(elapsed/(200*time.Millisecond)); syncs > most {
		t.Fatalf("%d Syncs for 10 batches in %v, want at most %d", syncs, elapsed, most)
	}
}
