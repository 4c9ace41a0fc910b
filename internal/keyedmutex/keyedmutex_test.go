package keyedmutex

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestLockSerialisesPerKey(t *testing.T) {
	type key struct{ login, chat string }
	var locks Map[key]
	a, b := key{"l", "a"}, key{"l", "b"}
	var inA atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := locks.Lock(a)
			if inA.Add(1) != 1 {
				t.Error("two holders of one key's lock")
			}
			// Another key's lock is free while a's is held.
			locks.Lock(b)()
			inA.Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	locks.mu.Lock()
	defer locks.mu.Unlock()
	if len(locks.locks) != 0 {
		t.Errorf("%d locks left after every holder released", len(locks.locks))
	}
}
