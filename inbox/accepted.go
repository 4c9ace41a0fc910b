package inbox

import "sync"

// acceptedConns is what the reader is to look at next: the connectors whose
// events were stored since it last looked, or every connector with pending
// events (all). Most wakes are for one connector's new events, and looking
// only at those saves listing the connectors with pending events, a query
// per wake and so per bridged message when messages come one at a time.
type acceptedConns struct {
	mu  sync.Mutex
	ids map[string]bool
	// all is set at start, after a failed or page-filling look, and when
	// the periodic look comes round (Reader.Rescan).
	all bool
}

func (a *acceptedConns) add(connectorID string) {
	a.mu.Lock()
	a.ids[connectorID] = true
	a.mu.Unlock()
}

func (a *acceptedConns) setAll() {
	a.mu.Lock()
	a.all = true
	a.mu.Unlock()
}

// take returns what to look at and starts collecting anew.
func (a *acceptedConns) take() (ids []string, all bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := range a.ids {
		ids = append(ids, id)
	}
	all = a.all
	clear(a.ids)
	a.all = false
	return ids, all
}
