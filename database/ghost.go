package database

import (
	"context"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// GhostQuery reads and writes the ghost table.
type GhostQuery struct {
	*dbutil.QueryHelper[*Ghost]
}

// Ghost is the Matrix puppet of one network contact, with what the bridge has
// already told the homeserver about it, so that nothing is sent twice.
type Ghost struct {
	ID         string
	MXID       id.UserID
	Name       string
	NameSet    bool
	AvatarID   string
	AvatarMXC  id.ContentURIString
	AvatarSet  bool
	Registered bool
}

const (
	getGhostBaseQuery   = `SELECT id, mxid, name, name_set, avatar_id, avatar_mxc, avatar_set, registered FROM ghost`
	getGhostQuery       = getGhostBaseQuery + ` WHERE id=$1`
	getGhostByMXIDQuery = getGhostBaseQuery + ` WHERE mxid=$1`
	upsertGhostQuery    = `
		INSERT INTO ghost (id, mxid, name, name_set, avatar_id, avatar_mxc, avatar_set, registered)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET mxid=excluded.mxid, name=excluded.name, name_set=excluded.name_set,
			avatar_id=excluded.avatar_id, avatar_mxc=excluded.avatar_mxc, avatar_set=excluded.avatar_set,
			registered=excluded.registered`
)

// Scan reads a ghost row.
func (g *Ghost) Scan(row dbutil.Scannable) (*Ghost, error) {
	return dbutil.ValueOrErr(g, row.Scan(&g.ID, &g.MXID, &g.Name, &g.NameSet, &g.AvatarID, &g.AvatarMXC, &g.AvatarSet, &g.Registered))
}

func (g *Ghost) sqlVariables() []any {
	return []any{g.ID, g.MXID, g.Name, g.NameSet, g.AvatarID, g.AvatarMXC, g.AvatarSet, g.Registered}
}

// Get returns a ghost by contact id, or nil.
func (q *GhostQuery) Get(ctx context.Context, contactID string) (*Ghost, error) {
	return q.QueryOne(ctx, getGhostQuery, contactID)
}

// GetByMXID returns a ghost by Matrix user id, or nil.
func (q *GhostQuery) GetByMXID(ctx context.Context, userID id.UserID) (*Ghost, error) {
	return q.QueryOne(ctx, getGhostByMXIDQuery, userID)
}

// Put inserts or replaces a ghost row.
func (q *GhostQuery) Put(ctx context.Context, g *Ghost) error {
	return q.Exec(ctx, upsertGhostQuery, g.sqlVariables()...)
}
