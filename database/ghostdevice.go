package database

import (
	"context"
	"database/sql"
	"errors"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// GhostDeviceQuery reads and writes the ghost_device table and, next to it,
// ghost_cross_signing (one row per ghost, only ever read with its device).
type GhostDeviceQuery struct {
	*dbutil.QueryHelper[*GhostDevice]
}

// GhostDevice is a ghost's own Matrix device, made for encrypted rooms.
type GhostDevice struct {
	MXID        id.UserID
	DeviceID    id.DeviceID
	AccessToken string
	// Syncing is set once the ghost is in an encrypted room: its to-device
	// /sync loop then runs, and starts again with the bridge.
	Syncing bool
	// KeysChecked is set once every one-time key the homeserver holds for
	// the device is known to be one its account holds (e2ee/otkrepair.go).
	// A device made now is stored with it set: the key count fix it was
	// made after (e2ee/sync.go) keeps its account from dropping a key.
	KeysChecked bool
}

const (
	getGhostDeviceBaseQuery = `SELECT mxid, device_id, access_token, syncing, keys_checked FROM ghost_device`
	putGhostDeviceQuery     = `
		INSERT INTO ghost_device (mxid, device_id, access_token, syncing, keys_checked) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (mxid) DO UPDATE SET device_id=excluded.device_id, access_token=excluded.access_token,
			syncing=excluded.syncing, keys_checked=excluded.keys_checked`
	putGhostCrossSigningQuery = `INSERT INTO ghost_cross_signing (mxid, seeds) VALUES ($1, $2)
		ON CONFLICT (mxid) DO UPDATE SET seeds=excluded.seeds`
)

// Scan reads a ghost_device row.
func (d *GhostDevice) Scan(row dbutil.Scannable) (*GhostDevice, error) {
	err := row.Scan(&d.MXID, &d.DeviceID, &d.AccessToken, &d.Syncing, &d.KeysChecked)
	return d, err
}

// Get returns a ghost's device, or nil.
func (q *GhostDeviceQuery) Get(ctx context.Context, mxid id.UserID) (*GhostDevice, error) {
	return q.QueryOne(ctx, getGhostDeviceBaseQuery+" WHERE mxid=$1", mxid)
}

// Syncing returns the devices whose /sync loop should run.
func (q *GhostDeviceQuery) Syncing(ctx context.Context) ([]*GhostDevice, error) {
	return q.QueryMany(ctx, getGhostDeviceBaseQuery+" WHERE syncing")
}

// RegisteredWithout returns up to limit registered ghosts that have no
// device, in user id order after the given one ("" for the first).
func (q *GhostDeviceQuery) RegisteredWithout(ctx context.Context, after id.UserID, limit int) ([]id.UserID, error) {
	rows, err := q.GetDB().Query(ctx, `SELECT g.mxid FROM ghost g WHERE g.registered AND g.mxid > $1
		AND NOT EXISTS (SELECT 1 FROM ghost_device d WHERE d.mxid=g.mxid) ORDER BY g.mxid LIMIT $2`, after, limit)
	return dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[id.UserID], err).AsList()
}

// Put inserts or replaces a ghost's device.
func (q *GhostDeviceQuery) Put(ctx context.Context, d *GhostDevice) error {
	return q.Exec(ctx, putGhostDeviceQuery, d.MXID, d.DeviceID, d.AccessToken, d.Syncing, d.KeysChecked)
}

// Unchecked returns up to limit devices whose one-time keys are still to
// be checked, in user id order after the given one ("" for the first).
func (q *GhostDeviceQuery) Unchecked(ctx context.Context, after id.UserID, limit int) ([]*GhostDevice, error) {
	return q.QueryMany(ctx, getGhostDeviceBaseQuery+" WHERE NOT keys_checked AND mxid > $1 ORDER BY mxid LIMIT $2", after, limit)
}

// SetKeysChecked records that the device's one-time keys were checked. It
// names the device, so that a ghost's device replaced meanwhile is not
// taken for the one that was checked.
func (q *GhostDeviceQuery) SetKeysChecked(ctx context.Context, mxid id.UserID, deviceID id.DeviceID) error {
	return q.Exec(ctx, "UPDATE ghost_device SET keys_checked=true WHERE mxid=$1 AND device_id=$2", mxid, deviceID)
}

// SetSyncing records that the ghost's device syncs.
func (q *GhostDeviceQuery) SetSyncing(ctx context.Context, mxid id.UserID) error {
	return q.Exec(ctx, "UPDATE ghost_device SET syncing=true WHERE mxid=$1", mxid)
}

// ClearSyncing records that the ghost's device no longer syncs: the ghost
// is in no portal any more.
func (q *GhostDeviceQuery) ClearSyncing(ctx context.Context, mxid id.UserID) error {
	return q.Exec(ctx, "UPDATE ghost_device SET syncing=false WHERE mxid=$1", mxid)
}

// Delete forgets a ghost's device.
func (q *GhostDeviceQuery) Delete(ctx context.Context, mxid id.UserID) error {
	return q.Exec(ctx, "DELETE FROM ghost_device WHERE mxid=$1", mxid)
}

// CrossSigning returns a ghost's sealed cross-signing seeds, or nil.
func (q *GhostDeviceQuery) CrossSigning(ctx context.Context, mxid id.UserID) ([]byte, error) {
	var seeds []byte
	err := q.GetDB().QueryRow(ctx, "SELECT seeds FROM ghost_cross_signing WHERE mxid=$1", mxid).Scan(&seeds)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return seeds, err
}

// PutCrossSigning stores a ghost's sealed cross-signing seeds.
func (q *GhostDeviceQuery) PutCrossSigning(ctx context.Context, mxid id.UserID, seeds []byte) error {
	return q.Exec(ctx, putGhostCrossSigningQuery, mxid, seeds)
}
