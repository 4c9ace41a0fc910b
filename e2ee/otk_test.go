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
	db := testdb.Open(t, testdb.SQLite(t))
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	if err := crypto.NewSQLCryptoStore(db.Database, dbutil.ZeroLogger(log), "", "", nil).DB.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	load := func() *crypto.OlmMachine {
		store := crypto.NewSQLCryptoStore(db.Database, dbutil.ZeroLogger(log), string(ghost.UserID), ghost.DeviceID, []byte("pickle"))
		client, err := mautrix.NewClient(hs.URL, ghost.UserID, ghost.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		client.DeviceID, client.Store, client.Log = ghost.DeviceID, store, log
		mach := crypto.NewOlmMachine(client, &log, store, noRooms{})
		if err := mach.Load(ctx); err != nil {
			t.Fatal(err)
		}
		return mach
	}
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
