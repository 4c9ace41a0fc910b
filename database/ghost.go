package database

import (
	"context"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// GhostQuery reads and writes the ghost table.
type GhostQuery struct{ db *dbutil.Database }

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

const ghostColumns = "id, mxid, name, name_set, avatar_id, avatar_mxc, avatar_set, registered"

func scanGhost(row dbutil.Scannable) (*Ghost, error) {
	var g Ghost
	err := row.Scan(&g.ID, &g.MXID, &g.Name, &g.NameSet, &g.AvatarID, &g.AvatarMXC, &g.AvatarSet, &g.Registered)
	return &g, err
}

// Get returns a ghost by contact id, or nil.
func (q *GhostQuery) Get(ctx context.Context, contactID string) (*Ghost, error) {
	return queryOne(ctx, q.db, scanGhost, "SELECT "+ghostColumns+" FROM ghost WHERE id=$1", contactID)
}

// GetByMXID returns a ghost by Matrix user id, or nil.
func (q *GhostQuery) GetByMXID(ctx context.Context, userID id.UserID) (*Ghost, error) {
	return queryOne(ctx, q.db, scanGhost, "SELECT "+ghostColumns+" FROM ghost WHERE mxid=$1", userID)
}

// Put inserts or replaces a ghost row.
func (q *GhostQuery) Put(ctx context.Context, g *Ghost) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO ghost (`+ghostColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET mxid=excluded.mxid, name=excluded.name, name_set=excluded.name_set,
			avatar_id=excluded.avatar_id, avatar_mxc=excluded.avatar_mxc, avatar_set=excluded.avatar_set,
			registered=excluded.registered`,
		g.ID, g.MXID, g.Name, g.NameSet, g.AvatarID, g.AvatarMXC, g.AvatarSet, g.Registered)
	return err
}
