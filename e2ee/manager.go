// Package e2ee is end-to-bridge encryption with a device per ghost: each
// ghost that is in an encrypted room logs in with the appservice login as
// itself, gets its own Olm account (on mautrix-go's crypto store, in the
// bridge's database, one account per ghost), and gets its to-device
// messages, device-list changes and one-time-key counts one of two ways:
// pushed by the homeserver in appservice transactions (MSC2409/MSC3202,
// encryption.appservice, push.go), or by a /sync loop per device that only
// carries these (sync.go), for homeservers such as Dendrite that push none
// of them to appservices. Messages the
// ghost sends into an encrypted room are encrypted by its own device, and
// the user's encrypted messages are decrypted by the ghost they were sent to.
package e2ee

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
)

// deviceDisplayName is what the user's client shows for a ghost's device.
const deviceDisplayName = "dmbridge"

// Options are what the manager needs from the rest of the bridge.
type Options struct {
	Config *config.Config
	DB     *database.Database
	AS     *mas.AppService
	// State is the bridge's state store, with its membership cache.
	State *appservice.StateStore
	// IsBridgeUser tells the bridge's own users (ghosts, bot) apart: they
	// get no room keys, since no device of theirs reads a room.
	IsBridgeUser func(id.UserID) bool
	Log          zerolog.Logger
	// KeyWait is how long a decryption waits for a missing room key, once
	// before and once after asking the sender for it; 0 means 10 s.
	KeyWait time.Duration
	// RegisterGhost registers a ghost with the homeserver before its
	// device's login (matrix.Intents.RegisterGhost, whose intents are in a
	// bounded cache: mautrix's AppService.Intent keeps every intent it
	// makes, and the device preparer goes through every ghost).
	RegisterGhost func(ctx context.Context, userID id.UserID) error
}

// Manager owns every ghost's device.
type Manager struct {
	o       Options
	http    *http.Client
	log     zerolog.Logger
	keyWait time.Duration

	// shared is the crypto store without an account: the tables of
	// tracked users and their devices are shared by every ghost.
	shared *crypto.SQLCryptoStore
	// pushed is encryption.appservice: no /sync loops.
	pushed bool
	// syncLoops counts running /sync loops.
	syncLoops atomic.Int32
	// syncRetry is the wait before a failed /sync, or a loop that ended,
	// is tried again: syncBackoff (a test of the retry sets its own rather
	// than wait out seconds).
	syncRetry func(fails int) time.Duration
	// renewFailures counts devices whose dropped token could not be
	// replaced (renew.go).
	renewFailures atomic.Int32

	mu      sync.Mutex
	devices map[id.UserID]*device
	prep    *preparer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// device is one ghost's device and Olm machine, made on first use.
type device struct {
	userID id.UserID
	// initMu serialises the login and key upload; mach is set once done.
	initMu sync.Mutex
	mach   *crypto.OlmMachine
	store  *crypto.SQLCryptoStore
	// encMu serialises encryption: one outbound session per room.
	encMu sync.Mutex
	// renewOnce: the device is renewed (renew.go) once, by whichever of
	// its users first finds its token dropped; the others wait for it.
	renewOnce sync.Once
	syncing   bool
	// stopSync ends the device's /sync loop and syncDone is closed when it
	// has (both under the manager's mu; nil without a loop).
	stopSync context.CancelFunc
	syncDone chan struct{}
	// activeAt is the last Active (under the manager's mu): a portal being
	// made calls it before its room is stored (see Release).
	activeAt time.Time
	// keysMu serialises what reads or changes the account's one-time keys
	// outside mautrix's own locks: handing the machine a /sync response or
	// a push (to-device messages use up keys, key counts upload new ones)
	// and the repair of keys orphaned before the key count fix
	// (otkrepair.go).
	keysMu sync.Mutex
	// repairing (under keysMu) is set while the repair claims the device's
	// keys from the homeserver: key counts are then not acted on, since an
	// upload would hand the repair fresh keys to claim; it uploads itself
	// when done.
	repairing bool
}

// New prepares mautrix-go's crypto tables in the bridge's database.
func New(ctx context.Context, o Options) (*Manager, error) {
	if o.Config.Encryption.PickleKey == "" {
		return nil, errors.New("encryption.pickle_key is empty; run the bridge with -g to generate it")
	}
	// The crypto store passes arrays to PostgreSQL through this hook.
	crypto.PostgresArrayWrapper = pq.Array
	store := crypto.NewSQLCryptoStore(o.DB.Database, dbutil.ZeroLogger(o.Log.With().Str("db_section", "crypto").Logger()), "", "", nil)
	if err := store.DB.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("upgrade crypto store: %w", err)
	}
	keyWait := o.KeyWait
	if keyWait <= 0 {
		keyWait = 10 * time.Second
	}
	// Its own client without a total timeout, for the /sync long polls, on
	// the bridge's transport so that the metrics count these requests too
	// (under the bound the AS client's transport carries, see
	// matrix.BoundInTransport).
	httpClient := &http.Client{Transport: matrix.Unbounded(o.AS.HTTPClient.Transport)}
	m := &Manager{
		o: o, http: httpClient, keyWait: keyWait, syncRetry: syncBackoff, shared: store, pushed: o.Config.Encryption.Appservice,
		log:     o.Log.With().Str("component", "e2ee").Logger(),
		devices: map[id.UserID]*device{},
		prep:    newPreparer(),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Start loads the devices of the ghosts that were in encrypted rooms
// (checking that their keys still match the homeserver's) and, unless the
// homeserver pushes their data, starts their /sync loops.
func (m *Manager) Start(ctx context.Context) error {
	rows, err := m.o.DB.GhostDev.Syncing(ctx)
	if err != nil {
		return fmt.Errorf("load ghost devices: %w", err)
	}
	for _, row := range rows {
		if inPortal, err := m.inPortal(ctx, row.MXID); err != nil {
			return fmt.Errorf("look for the portals of %s: %w", row.MXID, err)
		} else if !inPortal {
			// Its DMs ended while the bridge was not running, or before
			// loops were released (Release).
			if err := m.o.DB.GhostDev.ClearSyncing(ctx, row.MXID); err != nil {
				return fmt.Errorf("mark ghost device not syncing: %w", err)
			}
			continue
		}
		if _, err := m.Active(ctx, row.MXID); err != nil {
			m.log.Err(err).Stringer("user_id", row.MXID).Msg("Failed to start ghost device")
		}
	}
	m.startPreparing()
	m.startRepair()
	return nil
}

// Stop ends every /sync loop.
func (m *Manager) Stop() {
	m.cancel()
	m.wg.Wait()
}

// Attach makes the intent's client encrypt what it sends into encrypted
// rooms with its ghost's own device. It is the one hook on the send path:
// mautrix's client calls the helper for every message event into a room
// the state store knows as encrypted.
func (m *Manager) Attach(intent *mas.IntentAPI) {
	if intent == nil {
		return
	}
	// Every intent of the ghost gets it: intents are rebuilt when the
	// bounded cache in matrix/ drops them.
	intent.Client.Crypto = &ghostCrypto{m: m, userID: intent.UserID}
}

// Ensure gives the ghost its device (logging in and uploading its keys the
// first time), without starting its /sync loop. Calling it before the ghost
// is invited anywhere means the user's client finds the device when it
// first encrypts for the ghost.
func (m *Manager) Ensure(ctx context.Context, userID id.UserID) error {
	_, err := m.device(ctx, userID)
	return err
}

// Active gives the ghost its device and starts its /sync loop (none when
// the homeserver pushes), for a ghost that is in an encrypted room.
func (m *Manager) Active(ctx context.Context, userID id.UserID) (*crypto.OlmMachine, error) {
	d, err := m.active(ctx, userID)
	if err != nil {
		return nil, err
	}
	return d.mach, nil
}

func (m *Manager) active(ctx context.Context, userID id.UserID) (*device, error) {
	d, err := m.device(ctx, userID)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.devices[userID] != d {
		// The preparer let go of this device after making it (see
		// prepareOne); a syncing device must be the one in the map, so
		// that no second machine and /sync loop is made for it.
		m.mu.Unlock()
		return m.active(ctx, userID)
	}
	start := !d.syncing
	d.syncing, d.activeAt = true, time.Now()
	m.mu.Unlock()
	if start {
		if err := m.o.DB.GhostDev.SetSyncing(ctx, userID); err != nil {
			return nil, fmt.Errorf("mark ghost device syncing: %w", err)
		}
		if !m.pushed {
			m.startSync(d)
		}
	}
	return d, nil
}

func (m *Manager) device(ctx context.Context, userID id.UserID) (*device, error) {
	m.mu.Lock()
	d := m.devices[userID]
	if d == nil {
		d = &device{userID: userID}
		m.devices[userID] = d
	}
	m.mu.Unlock()
	d.initMu.Lock()
	defer d.initMu.Unlock()
	if d.mach != nil {
		return d, nil
	}
	if err := m.initDevice(ctx, d); err != nil {
		// Not kept: the preparer tries every ghost, and with a homeserver
		// that refuses (appservice login or key uploads off) each would
		// stay in the map for good. A caller still waiting on this entry
		// gets on with it as with one the preparer let go of (see active).
		m.mu.Lock()
		if m.devices[userID] == d {
			delete(m.devices, userID)
		}
		m.mu.Unlock()
		return nil, fmt.Errorf("device of %s: %w", userID, err)
	}
	if m.pushed {
		m.refreshOutdated(ctx, d)
	}
	return d, nil
}

// initDevice logs the ghost in (once; the device and its token are kept),
// loads or creates its Olm account and uploads its keys if they are new. A
// device whose keys are gone from the store, or no longer match what the
// homeserver has (a restored or lost database), is logged out and replaced:
// its room keys are lost either way, and a fresh device is what the user's
// client can work with.
func (m *Manager) initDevice(ctx context.Context, d *device) error {
	for attempt := 0; ; attempt++ {
		row, err := m.o.DB.GhostDev.Get(ctx, d.userID)
		if err != nil {
			return err
		}
		fresh := row == nil
		if fresh {
			if row, err = m.newDevice(ctx, d.userID); err != nil {
				return err
			}
		}
		mach, store, err := m.machine(ctx, d.userID, row)
		if err != nil {
			return err
		}
		if fresh {
			if err = mach.ShareKeys(ctx, -1); err != nil {
				return fmt.Errorf("upload device keys: %w", err)
			}
			m.selfSign(ctx, mach)
		} else if ok, err := m.keysMatch(ctx, mach); err != nil {
			return err
		} else if !ok && attempt == 0 {
			m.log.Warn().Stringer("user_id", d.userID).Stringer("device_id", row.DeviceID).
				Msg("Ghost device's keys are lost or differ from the homeserver's, replacing the device")
			if _, err := mach.Client.Logout(ctx); err != nil {
				m.log.Warn().Err(err).Stringer("user_id", d.userID).Msg("Failed to log out the old ghost device")
			}
			if err = m.o.DB.GhostDev.Delete(ctx, d.userID); err != nil {
				return err
			}
			continue
		}
		d.mach, d.store = mach, store
		return nil
	}
}

// newDevice logs the ghost in as a new device and stores it, with an empty
// Olm account.
func (m *Manager) newDevice(ctx context.Context, userID id.UserID) (*database.GhostDevice, error) {
	row, err := m.login(ctx, userID, "")
	if err != nil {
		return nil, err
	}
	// Keys of an earlier device of this ghost would be uploaded for the new
	// device id; start the account afresh.
	if err = m.forgetAccount(ctx, userID); err != nil {
		return nil, err
	}
	if err = m.o.DB.GhostDev.Put(ctx, row); err != nil {
		return nil, fmt.Errorf("store ghost device: %w", err)
	}
	m.log.Info().Stringer("user_id", userID).Stringer("device_id", row.DeviceID).Msg("Ghost logged in with a device of its own")
	return row, nil
}

// machine loads the device's Olm machine from the store.
func (m *Manager) machine(ctx context.Context, userID id.UserID, row *database.GhostDevice) (*crypto.OlmMachine, *crypto.SQLCryptoStore, error) {
	log := m.log.With().Stringer("user_id", userID).Logger()
	store := crypto.NewSQLCryptoStore(m.o.DB.Database, dbutil.ZeroLogger(log.With().Str("db_section", "crypto").Logger()),
		string(userID), row.DeviceID, []byte(m.o.Config.Encryption.PickleKey))
	client, err := mautrix.NewClient(m.o.Config.Homeserver.Address, userID, row.AccessToken)
	if err != nil {
		return nil, nil, err
	}
	client.DeviceID = row.DeviceID
	client.Client = m.http
	client.StateStore = m.o.State
	client.Store = store
	client.Log = log
	mach := crypto.NewOlmMachine(client, &log, store, stateStore{m.o.State})
	mach.DisableSharedGroupSessionTracking = true
	mach.SetBackgroundCtx(m.ctx)
	if err = mach.Load(ctx); err != nil {
		return nil, nil, fmt.Errorf("load olm account: %w", err)
	}
	return mach, store, nil
}

// keysMatch reports whether the stored account is the one whose identity
// keys the homeserver publishes for the device (one key query per device
// and start).
func (m *Manager) keysMatch(ctx context.Context, mach *crypto.OlmMachine) (bool, error) {
	if !mach.GetAccount().Shared {
		return false, nil
	}
	client := mach.Client
	resp, err := client.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{client.UserID: {client.DeviceID}}})
	if errors.Is(err, mautrix.MUnknownToken) {
		return false, nil // the device was deleted on the homeserver
	} else if err != nil {
		return false, fmt.Errorf("query the ghost device's keys: %w", err)
	}
	keys, ok := resp.DeviceKeys[client.UserID][client.DeviceID]
	if !ok {
		return false, nil
	}
	own := mach.OwnIdentity()
	return keys.Keys.GetEd25519(client.DeviceID) == own.SigningKey && keys.Keys.GetCurve25519(client.DeviceID) == own.IdentityKey, nil
}

// login makes the ghost a device with the appservice login: a new one, or,
// with deviceID, that device again under a new access token.
func (m *Manager) login(ctx context.Context, userID id.UserID, deviceID id.DeviceID) (*database.GhostDevice, error) {
	if err := m.ensureRegistered(ctx, userID); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	resp, err := m.o.AS.NewMautrixClient(userID).Login(ctx, &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypeAppservice,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(userID)},
		DeviceID:                 deviceID,
		InitialDeviceDisplayName: deviceDisplayName,
	})
	if err != nil {
		return nil, fmt.Errorf("appservice login: %w", err)
	}
	// Checked from the start: its keys are uploaded and topped up by code
	// that reads an absent key count right (sync.go), so none is orphaned.
	return &database.GhostDevice{MXID: userID, DeviceID: resp.DeviceID, AccessToken: resp.AccessToken, KeysChecked: true}, nil
}

// ensureRegistered registers the ghost unless the state store knows it is.
func (m *Manager) ensureRegistered(ctx context.Context, userID id.UserID) error {
	if ok, err := m.o.AS.StateStore.IsRegistered(ctx, userID); err != nil {
		return err
	} else if ok {
		return nil
	}
	if m.o.RegisterGhost == nil {
		return fmt.Errorf("%s is not registered and there is no way to register it", userID)
	}
	return m.o.RegisterGhost(ctx, userID)
}

func (m *Manager) forgetAccount(ctx context.Context, userID id.UserID) error {
	for _, table := range []string{"crypto_account", "crypto_olm_session", "crypto_megolm_outbound_session"} {
		if _, err := m.o.DB.Exec(ctx, "DELETE FROM "+table+" WHERE account_id=$1", string(userID)); err != nil {
			return fmt.Errorf("forget old keys of %s: %w", userID, err)
		}
	}
	return nil
}

// members are the room's users whose devices get the ghost's room keys.
func (m *Manager) members(ctx context.Context, roomID id.RoomID) ([]id.UserID, error) {
	all, err := m.o.State.GetRoomJoinedOrInvitedMembers(ctx, roomID)
	if err != nil {
		return nil, err
	}
	users := all[:0]
	for _, u := range all {
		if !m.o.IsBridgeUser(u) {
			users = append(users, u)
		}
	}
	return users, nil
}

// StateReader reads a room's state as a member (matrix.API does).
type StateReader interface {
	StateEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, stateKey string, out any) error
}

// RoomEncryption records a room's m.room.encryption state (as the ghost
// reads it), so that sends into it are encrypted; it returns whether the
// room is encrypted.
func (m *Manager) RoomEncryption(ctx context.Context, intent StateReader, roomID id.RoomID) (bool, error) {
	var content event.EncryptionEventContent
	err := intent.StateEvent(ctx, roomID, event.StateEncryption, "", &content)
	if errors.Is(err, mautrix.MNotFound) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("read encryption state of %s: %w", roomID, err)
	}
	if content.Algorithm == "" {
		return false, nil
	}
	if err = m.o.State.SetEncryptionEvent(ctx, roomID, &content); err != nil {
		return false, err
	}
	return true, nil
}
