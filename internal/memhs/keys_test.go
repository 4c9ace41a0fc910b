package memhs

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/signatures"
	"maunium.net/go/mautrix/id"
)

// TestKeysUploadedAreQueried: a device's keys come back from a query, its
// one-time keys are counted, and a device never uploaded is not listed.
func TestKeysUploadedAreQueried(t *testing.T) {
	s, client := startWithGhost(t)
	ctx := context.Background()
	login, err := client.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypeAppservice,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "@ghost:hs"}})
	if err != nil {
		t.Fatal(err)
	}
	device, _ := mautrix.NewClient(s.URL, login.UserID, login.AccessToken)
	device.DeviceID = login.DeviceID
	keys := &mautrix.DeviceKeys{UserID: login.UserID, DeviceID: login.DeviceID,
		Keys:       mautrix.KeyMap{id.NewDeviceKeyID(id.KeyAlgorithmEd25519, login.DeviceID): "ed"},
		Signatures: signatures.Signatures{}}
	otks := map[id.KeyID]mautrix.OneTimeKey{"signed_curve25519:a": {Key: "a"}, "signed_curve25519:b": {Key: "b"}}
	up, err := device.UploadKeys(ctx, &mautrix.ReqUploadKeys{DeviceKeys: keys, OneTimeKeys: otks})
	if err != nil || up.OneTimeKeyCounts.SignedCurve25519 != 2 {
		t.Fatalf("upload: %+v %v, want 2 one-time keys", up, err)
	}
	// One-time keys alone name no device: the token's is meant.
	up, err = device.UploadKeys(ctx, &mautrix.ReqUploadKeys{OneTimeKeys: map[id.KeyID]mautrix.OneTimeKey{"signed_curve25519:c": {Key: "c"}}})
	if err != nil || up.OneTimeKeyCounts.SignedCurve25519 != 3 {
		t.Fatalf("second upload: %+v %v, want 3 one-time keys", up, err)
	}
	q, err := device.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{login.UserID: {login.DeviceID}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := q.DeviceKeys[login.UserID][login.DeviceID]; got.Keys.GetEd25519(login.DeviceID) != "ed" {
		t.Fatalf("queried keys %+v, want the uploaded ones", q.DeviceKeys)
	}
	q, err = device.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{login.UserID: {"OTHER"}}})
	if err != nil || len(q.DeviceKeys[login.UserID]) != 0 {
		t.Fatalf("query of a device never uploaded: %+v %v", q.DeviceKeys, err)
	}
}
