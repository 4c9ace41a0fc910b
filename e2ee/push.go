package e2ee

import (
	"context"
	"maps"
	"slices"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
)

// The push path (encryption.appservice): the homeserver puts the ghosts'
// to-device messages, device-list changes and one-time-key counts into its
// appservice transactions (MSC2409/MSC3202) and no ghost device runs a
// /sync loop. The intake hands each transaction's data here before it
// answers 200 (see appservice.Link.handleCryptoPush).

var _ appservice.CryptoSink = (*Manager)(nil)

// delivery is what one push carries for one of the bridge's devices.
type delivery struct {
	userID   id.UserID
	deviceID id.DeviceID
	toDevice []*event.Event
	otk      *mautrix.OTKCount
}

// HandleCryptoPush routes pushed encryption data to the ghosts' devices.
// Only a (user, device) pair that is one of the bridge's ghost devices gets
// anything; the rest is dropped with a debug line and never acted on: the
// transaction merely names them.
func (m *Manager) HandleCryptoPush(ctx context.Context, push *appservice.CryptoPush) {
	for _, dl := range m.route(ctx, push) {
		m.deliver(ctx, dl)
	}
	if len(push.DeviceListChanged) > 0 {
		m.deviceListsChanged(ctx, push.DeviceListChanged)
	}
}

// route sorts a push by target device, in the order the targets first
// appear, dropping what is not for a device the bridge owns. It reads the
// database at most once per named ghost and changes nothing.
func (m *Manager) route(ctx context.Context, push *appservice.CryptoPush) []*delivery {
	var out []*delivery
	byUser := map[id.UserID]*delivery{}
	owned := map[id.UserID]id.DeviceID{} // "" when the bridge has no device for the user
	target := func(userID id.UserID, deviceID id.DeviceID, what string) *delivery {
		dev, known := owned[userID]
		if !known {
			dev = m.ownedDevice(ctx, userID)
			owned[userID] = dev
		}
		if dev == "" || dev != deviceID {
			m.log.Debug().Stringer("user_id", userID).Stringer("device_id", deviceID).Str("what", what).
				Bool("bridge_user", dev != "").Msg("Dropping pushed encryption data for a device that is not the bridge's")
			return nil
		}
		dl := byUser[userID]
		if dl == nil {
			dl = &delivery{userID: userID, deviceID: deviceID}
			byUser[userID] = dl
			out = append(out, dl)
		}
		return dl
	}
	for _, evt := range push.ToDevice {
		if dl := target(evt.ToUserID, evt.ToDeviceID, "to-device "+evt.Type.Type); dl != nil {
			dl.toDevice = append(dl.toDevice, evt)
		}
	}
	for i := range push.OTKCounts {
		count := push.OTKCounts[i]
		if dl := target(count.UserID, count.DeviceID, "one-time-key count"); dl != nil {
			dl.otk = &count
		}
	}
	return out
}

// ownedDevice is the ghost's current device id, or "" when the user is
// not one of the bridge's ghosts or has no device. Users outside the
// bridge's namespace cost no database read.
func (m *Manager) ownedDevice(ctx context.Context, userID id.UserID) id.DeviceID {
	if !m.o.IsBridgeUser(userID) {
		return ""
	}
	m.mu.Lock()
	d := m.devices[userID]
	m.mu.Unlock()
	if d != nil {
		d.initMu.Lock()
		mach := d.mach
		d.initMu.Unlock()
		if mach != nil {
			return mach.Client.DeviceID
		}
	}
	row, err := m.o.DB.GhostDev.Get(ctx, userID)
	if err != nil {
		m.log.Err(err).Stringer("user_id", userID).Msg("Failed to look up a ghost's device for pushed encryption data")
		return ""
	}
	if row == nil {
		return ""
	}
	return row.DeviceID
}

// deliver hands a device its to-device events, in order, then its key count.
func (m *Manager) deliver(ctx context.Context, dl *delivery) {
	log := m.log.With().Stringer("user_id", dl.userID).Stringer("device_id", dl.deviceID).Logger()
	d, err := m.device(ctx, dl.userID)
	if err != nil {
		log.Err(err).Msg("Failed to load the ghost device for pushed encryption data")
		return
	}
	mach := d.mach
	if mach.Client.DeviceID != dl.deviceID {
		// Loading found the device's keys lost and replaced it: what was
		// sent to the old device cannot be read by the new one.
		log.Debug().Msg("Dropping pushed encryption data for a ghost device that was just replaced")
		return
	}
	ctx = log.WithContext(ctx)
	d.keysMu.Lock()
	defer d.keysMu.Unlock()
	for _, evt := range dl.toDevice {
		mach.HandleToDeviceEvent(ctx, evt)
	}
	// Not while the repair claims the device's keys: it uploads when done.
	if dl.otk != nil && !d.repairing {
		topUp(ctx, mach, dl.otk)
	}
	if len(dl.toDevice) > 0 {
		mach.MarkOlmHashSavePoint(ctx)
	}
}

// topUp acts on a pushed one-time-key count: below half of what the
// account keeps, the device uploads more. The count is the homeserver's as
// of when it made the transaction, which can be before the device's last
// upload was stored (Dendrite was seen counting 3, 19 or 32 of the 51 keys
// a new device was storing), and the machine may be one loaded since that
// upload (a queried ghost's device is made and let go, then loaded again
// for the push), with no memory of it to make it check. Taken as it is,
// such a count made the device upload up to 47 keys on top of the 51 the
// server held, near the 100 its account keeps, past which it drops keys
// the server still hands out (otkrepair.go). So a low count only says to
// look: how many to upload comes from the server's own count, which
// ShareKeys reads first when given a negative one.
func topUp(ctx context.Context, mach *crypto.OlmMachine, count *mautrix.OTKCount) {
	if count.SignedCurve25519 >= int(mach.GetAccount().Internal.MaxNumberOfOneTimeKeys()/2) {
		return
	}
	if err := mach.ShareKeys(ctx, -1); err != nil {
		zerolog.Ctx(ctx).Err(err).Int("pushed_count", count.SignedCurve25519).Msg("Failed to top up the ghost device's one-time keys")
	}
}

// loadedMachines are the Olm machines of the devices in memory.
func (m *Manager) loadedMachines() []*device {
	m.mu.Lock()
	all := slices.Collect(maps.Values(m.devices))
	m.mu.Unlock()
	out := all[:0]
	for _, d := range all {
		d.initMu.Lock()
		ok := d.mach != nil
		d.initMu.Unlock()
		if ok {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b *device) int {
		if a.userID < b.userID {
			return -1
		} else if a.userID > b.userID {
			return 1
		}
		return 0
	})
	return out
}

// deviceListsChanged refetches the keys of the changed users whose devices
// the bridge tracks (users in an encrypted room with a ghost; any other
// named user is ignored). The device table is shared by all ghosts, so one
// key query serves them all; every other loaded ghost then drops its
// outbound sessions in the rooms it shares with a user whose device set
// changed, as its own /sync would have made it do, so the new device gets
// the next room key.
func (m *Manager) deviceListsChanged(ctx context.Context, changed []id.UserID) {
	tracked, err := m.shared.FilterTrackedUsers(ctx, changed)
	if err != nil {
		m.log.Err(err).Msg("Failed to filter pushed device-list changes")
		return
	}
	if len(tracked) == 0 {
		m.log.Debug().Int("users", len(changed)).Msg("Pushed device-list changes name no tracked user")
		return
	}
	machines := m.loadedMachines()
	if len(machines) == 0 {
		// No ghost device is in memory; the first one to load fetches them.
		if err = m.shared.MarkTrackedUsersOutdated(ctx, tracked); err != nil {
			m.log.Err(err).Msg("Failed to mark changed device lists outdated")
		}
		return
	}
	before := map[id.UserID][]id.DeviceID{}
	for _, u := range tracked {
		before[u] = m.deviceIDs(ctx, u)
	}
	if _, err = machines[0].mach.FetchKeys(ctx, tracked, false); err != nil {
		m.log.Err(err).Msg("Failed to fetch keys after pushed device-list changes")
		if err = m.shared.MarkTrackedUsersOutdated(ctx, tracked); err != nil {
			m.log.Err(err).Msg("Failed to mark changed device lists outdated")
		}
		return
	}
	for _, u := range tracked {
		if slices.Equal(before[u], m.deviceIDs(ctx, u)) {
			continue
		}
		for _, d := range machines[1:] {
			d.mach.OnDevicesChanged(ctx, u)
		}
	}
}

// deviceIDs are the user's stored devices, sorted.
func (m *Manager) deviceIDs(ctx context.Context, userID id.UserID) []id.DeviceID {
	devices, err := m.shared.GetDevices(ctx, userID)
	if err != nil {
		return nil
	}
	return slices.Sorted(maps.Keys(devices))
}

// refreshOutdated fetches the device lists that changed while no ghost
// device was in memory, with the device that just loaded.
func (m *Manager) refreshOutdated(ctx context.Context, d *device) {
	users, err := m.shared.GetOutdatedTrackedUsers(ctx)
	if err != nil || len(users) == 0 {
		return
	}
	if _, err = d.mach.FetchKeys(ctx, users, false); err != nil {
		m.log.Warn().Err(err).Msg("Failed to fetch outdated device lists")
	}
}
