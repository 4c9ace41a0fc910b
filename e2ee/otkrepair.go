package e2ee

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/goolm/account"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
)

// The one-time-key repair. Before the key count fix (sync.go), a ghost
// device's first /sync on Dendrite read the absent key count as 0 and
// uploaded 50 more keys to the 51 it had; its account keeps 100, so it
// dropped its oldest key while the homeserver still holds it and hands it
// out. Whoever claims that key sends a pre-key message the device cannot
// open, and the room key in it (one message) is lost. The fix keeps new
// devices out of that state; this finds and removes such a key on the
// devices made before it (ghost_device.keys_checked false), once each, in
// the background after start.
//
// The homeserver offers no way to list a device's keys, only to claim them
// one at a time, so the repair claims all of the device's keys as the ghost
// itself, counts those the account does not hold, and uploads fresh ones.
// Keys it claims are never used by anyone, which costs nothing. A device
// whose account never generated more keys than it keeps cannot have
// dropped one, and is marked checked without a claim.

const (
	// repairEvery paces the repair: at most one of its homeserver requests
	// (a claim, or the next device) per interval, 50 a second, so that a
	// bridge with many old devices is a trickle the homeserver hardly
	// notices, not a burst.
	repairEvery = 20 * time.Millisecond
	// repairPage is how many unchecked devices one query returns.
	repairPage = 100
	// maxRepairClaims bounds the claims of one device, so that the repair
	// ends even with a homeserver that keeps handing out keys; the device
	// is then left unchecked and tried again at the next start. A device
	// holds 101 keys at most on the homeserver in the case repaired here.
	maxRepairClaims = 300
	// repairRequestTimeout bounds each of the repair's requests, which a
	// stopping manager does not cut off but waits for: a claim cut off may
	// have taken a key nobody then counts, and the upload that ends a
	// repair must be made, lest a device whose keys were claimed is left
	// with none on the homeserver.
	repairRequestTimeout = 10 * time.Second
)

// repairResult is what the repair did for one device.
type repairResult struct {
	// drained is set when the device's keys were claimed (not skipped).
	drained bool
	// claimed and orphans count the keys the homeserver handed out and
	// those of them the account did not hold.
	claimed, orphans int
}

// startRepair starts the background repair of the devices whose keys are
// unchecked; it ends when all have been tried.
func (m *Manager) startRepair() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		tick := time.NewTicker(repairEvery)
		defer tick.Stop()
		pace := func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
				return nil
			}
		}
		ctx := m.log.With().Str("action", "otk repair").Logger().WithContext(m.ctx)
		if err := m.repairAll(ctx, pace); err != nil && !errors.Is(err, context.Canceled) {
			zerolog.Ctx(ctx).Err(err).Msg("Failed to check ghost devices' one-time keys")
		}
	}()
}

// repairAll repairs every device whose keys are unchecked, one at a time,
// calling pace before each homeserver request. A device that fails stays
// unchecked and is tried again at the next start.
func (m *Manager) repairAll(ctx context.Context, pace func(context.Context) error) error {
	log := zerolog.Ctx(ctx)
	var after id.UserID
	var tried, drained, orphans, failed int
	for {
		rows, err := m.o.DB.GhostDev.Unchecked(ctx, after, repairPage)
		if err != nil {
			return fmt.Errorf("list ghost devices with unchecked keys: %w", err)
		}
		if len(rows) == 0 {
			break
		}
		after = rows[len(rows)-1].MXID
		for _, row := range rows {
			if err = pace(ctx); err != nil {
				return err
			}
			tried++
			res, err := m.repairDevice(ctx, row, pace)
			if ctx.Err() != nil {
				return ctx.Err()
			} else if err != nil {
				failed++
				log.Warn().Err(err).Stringer("user_id", row.MXID).Stringer("device_id", row.DeviceID).
					Msg("Failed to check a ghost device's one-time keys; trying again at the next start")
			}
			if res.drained {
				drained++
			}
			orphans += res.orphans
		}
	}
	if tried > 0 {
		log.Info().Int("devices", tried).Int("drained", drained).Int("orphans", orphans).Int("failed", failed).
			Msg("Checked the one-time keys of ghost devices from before the key count fix")
	}
	return nil
}

// repairDevice checks one device's keys on the homeserver and marks it
// checked. The device is loaded as for any use (its /sync loop, if it has
// one, keeps running) and let go of afterwards if it was not in memory.
func (m *Manager) repairDevice(ctx context.Context, row *database.GhostDevice, pace func(context.Context) error) (repairResult, error) {
	var res repairResult
	log := zerolog.Ctx(ctx).With().Stringer("user_id", row.MXID).Stringer("device_id", row.DeviceID).Logger()
	ctx = log.WithContext(ctx)
	m.mu.Lock()
	_, loaded := m.devices[row.MXID]
	m.mu.Unlock()
	d, err := m.device(ctx, row.MXID)
	if err != nil {
		return res, err
	}
	if !loaded {
		defer m.letGo(d)
	}
	if d.mach.Client.DeviceID != row.DeviceID {
		// Loading found its keys lost and replaced the device; the new
		// one is stored checked.
		return res, nil
	}
	d.keysMu.Lock()
	held, generated, err := heldOneTimeKeys(d.mach)
	// An account that never generated more keys than it keeps never
	// dropped one.
	res.drained = err == nil && generated > d.mach.GetAccount().Internal.MaxNumberOfOneTimeKeys()
	d.repairing = res.drained
	d.keysMu.Unlock()
	if err != nil {
		return res, err
	}
	if res.drained {
		start := time.Now()
		var claimed map[id.Curve25519]bool
		claimed, res.orphans, err = m.claimOwnKeys(ctx, d.mach, held, pace)
		res.claimed = len(claimed)
		if upErr := m.endRepair(ctx, d, claimed); err == nil {
			err = upErr
		}
		log.Info().Int("claimed", res.claimed).Int("orphans", res.orphans).Dur("took", time.Since(start)).
			Bool("done", err == nil).Msg("Claimed a ghost device's one-time keys from the homeserver")
		if err != nil {
			return res, err
		}
	}
	if err = m.o.DB.GhostDev.SetKeysChecked(ctx, row.MXID, row.DeviceID); err != nil {
		return res, fmt.Errorf("mark one-time keys checked: %w", err)
	}
	return res, nil
}

// claimOwnKeys claims the device's signed_curve25519 keys as the device
// itself, one claim per key (a claim hands out one key per device), until
// the homeserver has none left. It returns the keys claimed and how many
// of them the account does not hold.
func (m *Manager) claimOwnKeys(ctx context.Context, mach *crypto.OlmMachine, held map[id.Curve25519]bool, pace func(context.Context) error) (map[id.Curve25519]bool, int, error) {
	client := mach.Client
	req := &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{
		client.UserID: {client.DeviceID: id.KeyAlgorithmSignedCurve25519}}}
	claimed := map[id.Curve25519]bool{}
	orphans := 0
	for range maxRepairClaims {
		if err := pace(ctx); err != nil {
			return claimed, orphans, err
		}
		reqCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), repairRequestTimeout)
		resp, err := client.ClaimKeys(reqCtx, req)
		cancel()
		if err != nil {
			return claimed, orphans, fmt.Errorf("claim the device's own one-time key: %w", err)
		}
		keys := resp.OneTimeKeys[client.UserID][client.DeviceID]
		if len(keys) == 0 {
			return claimed, orphans, nil
		}
		for keyID, key := range keys {
			// A fallback key, or one handed out again, is what a homeserver
			// hands out once the one-time keys are gone.
			if key.Fallback || claimed[key.Key] {
				return claimed, orphans, nil
			}
			claimed[key.Key] = true
			if !held[key.Key] {
				orphans++
				zerolog.Ctx(ctx).Debug().Stringer("key_id", keyID).Msg("The homeserver handed out a one-time key the account does not hold")
			}
		}
	}
	return claimed, orphans, fmt.Errorf("the homeserver still hands out keys after %d claims", maxRepairClaims)
}

// endRepair drops the claimed keys from the account (no one can use them
// now, and left there they would make the account drop keys that someone
// may have just claimed as it tops up), uploads fresh ones with the
// server's count, and lets key counts be acted on again. It uploads even
// when the manager is stopping.
func (m *Manager) endRepair(ctx context.Context, d *device, claimed map[id.Curve25519]bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), repairRequestTimeout)
	defer cancel()
	d.keysMu.Lock()
	defer d.keysMu.Unlock()
	d.repairing = false
	forgetOneTimeKeys(d.mach, claimed)
	// Negative: ShareKeys reads the count from the server first.
	if err := d.mach.ShareKeys(ctx, -1); err != nil {
		return fmt.Errorf("upload fresh one-time keys: %w", err)
	}
	return nil
}

// The account's one-time keys are not in mautrix's API (OneTimeKeys lists
// only those not yet uploaded), so the two functions below read and change
// goolm's account, the only Olm the bridge builds with (the goolm tag).
// Callers hold the device's keysMu.

// heldOneTimeKeys returns the public parts of the one-time keys the account
// holds, and how many it has generated in all.
func heldOneTimeKeys(mach *crypto.OlmMachine) (map[id.Curve25519]bool, uint, error) {
	acc, ok := mach.GetAccount().Internal.(*account.Account)
	if !ok {
		return nil, 0, fmt.Errorf("the Olm account is a %T, not goolm's: cannot read its one-time keys", mach.GetAccount().Internal)
	}
	held := make(map[id.Curve25519]bool, len(acc.OTKeys))
	for _, k := range acc.OTKeys {
		held[k.Key.PublicKey.B64Encoded()] = true
	}
	return held, uint(acc.NextOneTimeKeyID), nil
}

// forgetOneTimeKeys removes the given keys from the account; the next save
// (the upload that follows) stores it so.
func forgetOneTimeKeys(mach *crypto.OlmMachine, keys map[id.Curve25519]bool) {
	acc, ok := mach.GetAccount().Internal.(*account.Account)
	if !ok || len(keys) == 0 {
		return
	}
	kept := acc.OTKeys[:0]
	for _, k := range acc.OTKeys {
		if !keys[k.Key.PublicKey.B64Encoded()] {
			kept = append(kept, k)
		}
	}
	acc.OTKeys = kept
}
