package inbox

import (
	"sync"

	"github.com/dmbridge/dmbridge/database"
)

// acceptedConns is what the reader is to look at next: the connectors whose
// events were stored since it last looked, with the rows stored, or every
// connector with pending events (all). Most wakes are for one connector's
// new events, and looking only at those saves listing the connectors with
// pending events, a query per wake and so per bridged message when messages
// come one at a time. The rows themselves save reading back what this
// process has just written: the reader takes them from here (see
// Reader.Next), and goes to the database only when it may have missed
// some, after a full page, a failure or an overflow of maxHandoff.
type acceptedConns struct {
	mu    sync.Mutex
	conns map[string]*storedRows
	// held counts the rows in conns, bounded by maxHandoff.
	held int
	// all is set at start, after a failed or page-filling look, when
	// the periodic look comes round (Reader.Rescan) and with a rewind.
	all bool
	// rewound holds, per connector, the seq before rows that may have to
	// be read again (see Inbox.AcceptBatch): the reader moves its cursor
	// back to it.
	rewound map[string]int64
}

// storedRows are a connector's rows committed since the reader last looked,
// in commit order; with overflow, some were not kept and the reader reads
// the database instead.
type storedRows struct {
	rows     []*database.InboxRow
	overflow bool
}

func (a *acceptedConns) add(connectorID string, rows []*database.InboxRow) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.conns[connectorID]
	if s == nil {
		s = &storedRows{}
		a.conns[connectorID] = s
	}
	if s.overflow {
		return
	}
	if a.held+len(rows) > maxHandoff {
		a.held -= len(s.rows)
		s.rows, s.overflow = nil, true
		return
	}
	s.rows = append(s.rows, rows...)
	a.held += len(rows)
}

// rewind makes the reader return the rows of connectorID after seq again,
// from the database, whether or not it returned them before.
func (a *acceptedConns) rewind(connectorID string, seq int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rewound == nil {
		a.rewound = make(map[string]int64)
	}
	if old, ok := a.rewound[connectorID]; !ok || seq < old {
		a.rewound[connectorID] = seq
	}
	a.all = true
}

func (a *acceptedConns) setAll() {
	a.mu.Lock()
	a.all = true
	a.mu.Unlock()
}

// take returns what to look at, and the rewinds, and starts collecting
// anew. With all, the rows are of no use (the reader reads every
// connector's from the database) and are dropped.
func (a *acceptedConns) take() (conns map[string]*storedRows, all bool, rewound map[string]int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	conns, all, rewound = a.conns, a.all, a.rewound
	a.conns = make(map[string]*storedRows)
	a.held = 0
	a.all = false
	a.rewound = nil
	return conns, all, rewound
}
