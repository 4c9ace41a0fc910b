package e2ee

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// noRooms is a state store for a machine that is in no room.
type noRooms struct{}

func (noRooms) IsEncrypted(context.Context, id.RoomID) (bool, error) { return false, nil }
func (noRooms) GetEncryptionEvent(context.Context, id.RoomID) (*event.EncryptionEventContent, error) {
	return nil, nil
}
func (noRooms) GetHistoryVisibility(context.Context, id.RoomID) (*event.HistoryVisibilityEventContent, error) {
	return nil, nil
}
func (noRooms) FindSharedRooms(context.Context, id.UserID) ([]id.RoomID, error) { return nil, nil }

// TestEveryHandedOutKeyIsKnown: a fresh ghost device uploads its one-time
// keys from one Olm machine (the preparer's), and a second machine loaded
// from the store, as Active loads it later, runs the device's first /sync.
// Dendrite leaves the key count out of an initial /sync, which reads as 0.
// Every key the homeserver then hands out must still be in the account:
// one that is not makes the first pre-key message from whoever claimed it
// unreadable, and the room key in it is lost (a CI run lost a message so).
func TestEveryHandedOutKeyIsKnown(t *testing.T) {
	ctx := context.Background()
	hs := tesths.Start(t)
	ghost := hs.CreateUser(t, "ghost")
	alice := hs.CreateUser(t, "alice")
	load := otkMachines(t, hs.URL, ghost)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	if err := load().ShareKeys(ctx, -1); err != nil {
		t.Fatal(err)
	}
	mach := load()
	resp, err := mach.Client.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first /sync: device_one_time_keys_count %+v", resp.DeviceOTKCount)
	if err := (&syncer{d: &device{mach: mach}, log: log}).ProcessResponse(ctx, resp, ""); err != nil {
		t.Fatal(err)
	}

	held, _, err := heldOneTimeKeys(mach)
	if err != nil {
		t.Fatal(err)
	}
	claimed, unknown := claimAll(t, alice, ghost.UserID, ghost.DeviceID, held)
	t.Logf("the account holds %d one-time keys; the homeserver handed out %d", len(held), claimed)
	if claimed == 0 || unknown > 0 {
		t.Errorf("%d of %d handed-out one-time keys are unknown to the device", unknown, claimed)
	}
}

// TestStaleCountAddsNoKeys: a new ghost device uploads its 51 one-time
// keys from one Olm machine, and a second one loaded from the store (as the
// push path loads a device the user query made and let go of, or a sync
// loop starts on a device made elsewhere) gets a count of 3, which Dendrite
// was seen to report while storing that upload. The device must top up
// from the server's count, not that one: taken as it was, it uploaded 47
// more, and the homeserver held 98.
func TestStaleCountAddsNoKeys(t *testing.T) {
	for name, tell := range map[string]func(context.Context, *crypto.OlmMachine, mautrix.OTKCount) error{
		"pushed": func(ctx context.Context, mach *crypto.OlmMachine, count mautrix.OTKCount) error {
			topUp(ctx, mach, &count)
			return nil
		},
		"synced": func(ctx context.Context, mach *crypto.OlmMachine, count mautrix.OTKCount) error {
			log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
			return (&syncer{d: &device{mach: mach}, log: log}).ProcessResponse(ctx, &mautrix.RespSync{DeviceOTKCount: count}, "s1")
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			hs := tesths.Start(t)
			ghost := hs.CreateUser(t, "ghost")
			alice := hs.CreateUser(t, "alice")
			load := otkMachines(t, hs.URL, ghost)
			if err := load().ShareKeys(ctx, -1); err != nil {
				t.Fatal(err)
			}
			mach := load()
			if err := tell(ctx, mach, mautrix.OTKCount{SignedCurve25519: 3, UserID: ghost.UserID, DeviceID: ghost.DeviceID}); err != nil {
				t.Fatal(err)
			}

			held, _, err := heldOneTimeKeys(mach)
			if err != nil {
				t.Fatal(err)
			}
			claimed, unknown := claimAll(t, alice, ghost.UserID, ghost.DeviceID, held)
			t.Logf("after a %s count of 3 the homeserver handed out %d one-time keys", name, claimed)
			if claimed > 51 || unknown > 0 {
				t.Errorf("the homeserver holds %d one-time keys (%d unknown to the device), want the 51 of the first upload", claimed, unknown)
			}
		})
	}
}

// otkMachines returns a function that loads an Olm machine for the user's
// device from one crypto store, each call a new machine over the same
// account, as the bridge loads a device again after letting go of it.
func otkMachines(t *testing.T, hsURL string, user *mautrix.Client) func() *crypto.OlmMachine {
	t.Helper()
	db := testdb.Open(t, testdb.SQLite(t))
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	if err := crypto.NewSQLCryptoStore(db.Database, dbutil.ZeroLogger(log), "", "", nil).DB.Upgrade(context.Background()); err != nil {
		t.Fatal(err)
	}
	return func() *crypto.OlmMachine {
		store := crypto.NewSQLCryptoStore(db.Database, dbutil.ZeroLogger(log), string(user.UserID), user.DeviceID, []byte("pickle"))
		client, err := mautrix.NewClient(hsURL, user.UserID, user.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		client.DeviceID, client.Store, client.Log = user.DeviceID, store, log
		mach := crypto.NewOlmMachine(client, &log, store, noRooms{})
		if err := mach.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		return mach
	}
}

// claimAll claims, as claimer, every one-time key the homeserver hands out
// for the device (at most 300), and returns how many it got and how many
// of those are neither in held nor a fallback key.
func claimAll(t *testing.T, claimer *mautrix.Client, userID id.UserID, deviceID id.DeviceID, held map[id.Curve25519]bool) (claimed, unknown int) {
	t.Helper()
	for claimed < 300 {
		claim, err := claimer.ClaimKeys(context.Background(), &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{
			userID: {deviceID: id.KeyAlgorithmSignedCurve25519}}})
		if err != nil {
			t.Fatal(err)
		}
		keys := claim.OneTimeKeys[userID][deviceID]
		if len(keys) == 0 {
			break
		}
		claimed++
		for keyID, k := range keys {
			if !held[k.Key] && !k.Fallback {
				unknown++
				t.Logf("claim %d handed out %s, which the account does not hold", claimed, keyID)
			}
		}
	}
	return claimed, unknown
}
