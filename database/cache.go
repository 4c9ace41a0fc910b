package database

import (
	"context"
	"sync"
	"sync/atomic"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// maxCached bounds each cache; past it the cache starts over, so memory
// stays flat however many portals and logins there are.
const maxCached = 20000

// rowCache keeps rows the per-message path reads (login, portal, whether a
// portal still has history to backfill), so that a bridged message does not
// pay a database round trip for each. Every write to a cached table goes
// through its query struct, which forgets the rows it touches; the
// generation stops a read that raced with such a write from putting the old
// row back. Rows read inside a transaction are never cached: the
// transaction may still roll back what it read.
type rowCache[K comparable, V any] struct {
	mu  sync.Mutex
	gen uint64
	m   map[K]V
}

func newRowCache[K comparable, V any]() *rowCache[K, V] {
	return &rowCache[K, V]{m: make(map[K]V)}
}

func (c *rowCache[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

// generation is taken before the read whose result may be put.
func (c *rowCache[K, V]) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *rowCache[K, V]) put(ctx context.Context, db *dbutil.Database, gen uint64, k K, v V) {
	if _, inTxn := db.Execable(ctx).(dbutil.Transaction); inTxn {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.m) >= maxCached {
		clear(c.m)
	}
	c.m[k] = v
}

func (c *rowCache[K, V]) forget(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, k)
}

func (c *rowCache[K, V]) forgetAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
}

// caches are the row caches of one Database, shared by its query structs.
type caches struct {
	logins  *rowCache[string, Login]
	portals *rowCache[PortalKey, Portal]
	// rooms maps a room to the portal that owned it when it was read. It
	// is only a hint: GetByRoom checks it against the portal's own row
	// (cached and invalidated as above), so a room that changed hands
	// since is read again rather than trusted.
	rooms      *rowCache[id.RoomID, PortalKey]
	backfilled *rowCache[PortalKey, bool]
	// txnWrites counts writes to cached rows made inside a transaction.
	// Until that transaction ends, a read outside it still sees the old
	// row and could cache it, so DoTxn forgets everything after a
	// transaction in which the count moved.
	txnWrites atomic.Uint64
}

func newCaches() *caches {
	return &caches{
		logins:     newRowCache[string, Login](),
		portals:    newRowCache[PortalKey, Portal](),
		rooms:      newRowCache[id.RoomID, PortalKey](),
		backfilled: newRowCache[PortalKey, bool](),
	}
}

// wrote is called by every write to a cached table, before and after it.
func (c *caches) wrote(ctx context.Context, db *dbutil.Database, forget func()) {
	forget()
	if _, inTxn := db.Execable(ctx).(dbutil.Transaction); inTxn {
		c.txnWrites.Add(1)
	}
}

func (c *caches) forgetAll() {
	c.logins.forgetAll()
	c.portals.forgetAll()
	c.rooms.forgetAll()
	c.backfilled.forgetAll()
}

// DoTxn is dbutil's DoTxn; after a transaction that wrote cached rows
// (committed or not) the caches start over (see caches.txnWrites).
func (db *Database) DoTxn(ctx context.Context, opts *dbutil.TxnOptions, fn func(ctx context.Context) error) error {
	before := db.cache.txnWrites.Load()
	err := db.Database.DoTxn(ctx, opts, fn)
	if db.cache.txnWrites.Load() != before {
		db.cache.forgetAll()
	}
	return err
}
