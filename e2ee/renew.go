package e2ee

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"

	"github.com/dmbridge/dmbridge/database"
)

// renewTimeout bounds logging a ghost device in again.
const renewTimeout = 2 * time.Minute

// errReplaced is a renewal that found the device replaced meanwhile.
var errReplaced = errors.New("the ghost's device was replaced meanwhile")

// dropped renews old once its token is found dropped, whether its /sync
// loop or a send found it: later callers wait until the first is done, and
// then find the new device (or none) in the manager.
func (m *Manager) dropped(old *device) {
	old.renewOnce.Do(func() { m.tokenDropped(old) })
}

// tokenDropped follows a /sync refused with M_UNKNOWN_TOKEN: the homeserver
// no longer knows the device's access token, because the device was logged
// out or deleted there (Dendrite drops its keys with it). Polling on with
// that token would fail every minute until a restart, and the device's
// sends (key claims, to-device room keys) fail with it. The ghost logs in
// again with the appservice login as the same device id and uploads the
// same identity keys, so the user's client keeps its sessions with it and
// sees the device it knew. If that fails, the dead device is dropped from
// memory and its loop stops: the ghost's next encrypted message or event
// makes it a new device (initDevice replaces a device the homeserver does
// not know), and so does the next start.
func (m *Manager) tokenDropped(old *device) {
	log := m.log.With().Stringer("user_id", old.userID).Stringer("device_id", old.mach.Client.DeviceID).Logger()
	log.Warn().Msg("The homeserver dropped the ghost device's access token; logging in again as the same device")
	ctx, cancel := context.WithTimeout(log.WithContext(m.ctx), renewTimeout)
	defer cancel()
	err := m.renew(ctx, old)
	if err == nil {
		log.Info().Msg("Ghost device logged in again with its keys; its /sync goes on")
		return
	} else if errors.Is(err, errReplaced) || m.ctx.Err() != nil {
		return
	}
	m.renewFailures.Add(1)
	log.Error().Err(err).Msg("Ghost device lost its access token and could not log in again; its /sync loop stops, " +
		"and the ghost gets a new device when it next needs one")
	m.mu.Lock()
	if m.devices[old.userID] == old {
		delete(m.devices, old.userID)
	}
	stop := old.stopSync
	old.syncing, old.stopSync = false, nil
	m.mu.Unlock()
	stopLoop(stop)
}

// stopLoop ends a device's /sync loop, if it had one: a renewal started by
// a send finds the old loop still polling with the dead token, and its
// context would otherwise stay attached to the manager's until shutdown.
// The loop itself may be the caller; cancelling its own context is fine.
func stopLoop(stop context.CancelFunc) {
	if stop != nil {
		stop()
	}
}

// renew logs the device in again under a new token and puts a new device
// object (client, machine) in place of old, with its own /sync loop. The old
// one is not changed in place: sends in flight read its client unlocked.
func (m *Manager) renew(ctx context.Context, old *device) error {
	userID, deviceID := old.userID, old.mach.Client.DeviceID
	row, err := m.o.DB.GhostDev.Get(ctx, userID)
	if err != nil {
		return fmt.Errorf("load the ghost device: %w", err)
	} else if row == nil || row.DeviceID != deviceID {
		return errReplaced
	}
	fresh, err := m.login(ctx, userID, deviceID)
	if err != nil {
		return err
	} else if fresh.DeviceID != deviceID {
		// A homeserver that will not reuse the id made a device we have
		// no keys for: gone again, and the next need makes a clean one.
		m.logoutStray(ctx, fresh)
		return fmt.Errorf("the homeserver gave device %s instead of %s", fresh.DeviceID, deviceID)
	}
	// Stored at once, before the keys go up: if anything below fails, the
	// ghost's next need finds the device under a token that works, sees
	// its keys missing and logs it out before making a new one
	// (initDevice). Under the dead token it could not, and the device
	// logged in again would stay in the user's list of the ghost's
	// devices, without keys, for good.
	row.AccessToken = fresh.AccessToken
	if err = m.o.DB.GhostDev.Put(ctx, row); err != nil {
		m.logoutStray(ctx, fresh)
		return fmt.Errorf("store the new access token: %w", err)
	}
	mach, store, err := m.machine(ctx, userID, row)
	if err != nil {
		return err
	}
	if ok, err := m.keysMatch(ctx, mach); err != nil {
		return err
	} else if !ok {
		// The homeserver dropped the device's keys with its token: the
		// same identity keys go up again, with fresh one-time keys (the
		// server holds none now) and the ghost's signature.
		mach.GetAccount().Shared = false
		if err = mach.ShareKeys(ctx, 0); err != nil {
			return fmt.Errorf("upload the device's keys again: %w", err)
		}
		m.selfSign(ctx, mach)
	}
	d := &device{userID: userID, mach: mach, store: store}
	m.mu.Lock()
	if m.devices[userID] != old {
		m.mu.Unlock()
		return errReplaced
	}
	m.devices[userID] = d
	// The new loop waits for the old one to end (startSync), so that the
	// two never poll at once.
	d.syncing, d.activeAt, d.syncDone = old.syncing, old.activeAt, old.syncDone
	stop := old.stopSync
	old.syncing, old.stopSync = false, nil
	m.mu.Unlock()
	stopLoop(stop)
	if d.syncing && !m.pushed {
		m.startSync(d)
	}
	return nil
}

// logoutStray logs out a device the homeserver made in place of the one
// asked for, so that it does not linger in the user's device list.
func (m *Manager) logoutStray(ctx context.Context, row *database.GhostDevice) {
	client, err := mautrix.NewClient(m.o.Config.Homeserver.Address, row.MXID, row.AccessToken)
	if err == nil {
		client.Client = m.http
		_, err = client.Logout(ctx)
	}
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Stringer("device_id", row.DeviceID).Msg("Failed to log out a device the homeserver made instead")
	}
}

// RenewFailures counts ghost devices whose dropped token could not be
// replaced by logging in again.
func (m *Manager) RenewFailures() int { return int(m.renewFailures.Load()) }
