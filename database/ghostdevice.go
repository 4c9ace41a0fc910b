package database

import (
	"context"
	"database/sql"
	"errors"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// GhostDeviceQuery reads and writes the ghost_device table.
type GhostDeviceQuery struct{ db *dbutil.Database }

// GhostDevice is a ghost's own Matrix device, made for encrypted rooms.
type GhostDevice struct {
	MXID        id.UserID
	DeviceID    id.DeviceID
	AccessToken string
	// Syncing is set once the ghost is in an encrypted room: its to-device
	// /sync loop then runs, and starts again with the bridge.
	Syncing bool
}

const ghostDeviceColumns = "mxid, device_id, access_token, syncing"

func scanGhostDevice(row dbutil.Scannable) (*GhostDevice, error) {
	var d GhostDevice
	err := row.Scan(&d.MXID, &d.DeviceID, &d.AccessToken, &d.Syncing)
	return &d, err
}

// Get returns a ghost's device, or nil.
func (q *GhostDeviceQuery) Get(ctx context.Context, mxid id.UserID) (*GhostDevice, error) {
	return queryOne(ctx, q.db, scanGhostDevice, "SELECT "+ghostDeviceColumns+" FROM ghost_device WHERE mxid=$1", mxid)
}

// Syncing returns the devices whose /sync loop should run.
func (q *GhostDeviceQuery) Syncing(ctx context.Context) ([]*GhostDevice, error) {
	return queryMany(ctx, q.db, scanGhostDevice, "SELECT "+ghostDeviceColumns+" FROM ghost_device WHERE syncing")
}

// Put inserts or replaces a ghost's device.
func (q *GhostDeviceQuery) Put(ctx context.Context, d *GhostDevice) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO ghost_device (`+ghostDeviceColumns+`) VALUES ($1, $2, $3, $4)
		ON CONFLICT (mxid) DO UPDATE SET device_id=excluded.device_id, access_token=excluded.access_token,
			syncing=excluded.syncing`,
		d.MXID, d.DeviceID, d.AccessToken, d.Syncing)
	return err
}

// SetSyncing records that the ghost's device syncs.
func (q *GhostDeviceQuery) SetSyncing(ctx context.Context, mxid id.UserID) error {
	_, err := q.db.Exec(ctx, "UPDATE ghost_device SET syncing=true WHERE mxid=$1", mxid)
	return err
}

// Delete forgets a ghost's device.
func (q *GhostDeviceQuery) Delete(ctx context.Context, mxid id.UserID) error {
	_, err := q.db.Exec(ctx, "DELETE FROM ghost_device WHERE mxid=$1", mxid)
	return err
}

// CrossSigning returns a ghost's sealed cross-signing seeds, or nil.
func (q *GhostDeviceQuery) CrossSigning(ctx context.Context, mxid id.UserID) ([]byte, error) {
	var seeds []byte
	err := q.db.QueryRow(ctx, "SELECT seeds FROM ghost_cross_signing WHERE mxid=$1", mxid).Scan(&seeds)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return seeds, err
}

// PutCrossSigning stores a ghost's sealed cross-signing seeds.
func (q *GhostDeviceQuery) PutCrossSigning(ctx context.Context, mxid id.UserID, seeds []byte) error {
	_, err := q.db.Exec(ctx, `INSERT INTO ghost_cross_signing (mxid, seeds) VALUES ($1, $2)
		ON CONFLICT (mxid) DO UPDATE SET seeds=excluded.seeds`, mxid, seeds)
	return err
}
