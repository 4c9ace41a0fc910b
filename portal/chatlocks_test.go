package portal

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dmbridge/dmbridge/database"
)

func TestChatLocksSerialisePerChat(t *testing.T) {
	var locks chatLocks
	a := database.PortalKey{LoginID: "l", ChatID: "a"}
	b := database.PortalKey{LoginID: "l", ChatID: "b"}
	var inA atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := locks.lock(a)
			if inA.Add(1) != 1 {
				t.Error("two holders of one chat's lock")
			}
			// Another chat's lock is free while a's is held.
			locks.lock(b)()
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
