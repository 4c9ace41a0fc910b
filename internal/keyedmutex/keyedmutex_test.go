package keyedmutex

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestSerialisesPerKey(t *testing.T) {
	var locks Mutex[string]
	var inA atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := locks.Lock("a")
			if inA.Add(1) != 1 {
				t.Error("two holders of one key's mutex")
			}
			// Another key's mutex is free while a's is held.
			locks.Lock("b")()
			inA.Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	if n := locks.Len(); n != 0 {
		t.Errorf("%d entries left after every holder released", n)
	}
}
