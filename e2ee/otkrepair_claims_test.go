package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/id"
)

// TestClaimOwnKeysEnds: the repair's claims stop when the homeserver has
// no key left for the device, hands out a fallback key, or hands out a key
// it handed out before, and give up after maxRepairClaims when it keeps
// handing out new ones (Dendrite does none of the last three; the test
// homeserver here does). Keys the account does not hold are counted.
func TestClaimOwnKeysEnds(t *testing.T) {
	const user, device = id.UserID("@ghost:x"), id.DeviceID("DEV")
	type answer struct {
		key      string // "" for none
		fallback bool
	}
	for _, c := range []struct {
		name        string
		answer      func(n int) answer
		wantClaims  int
		wantOrphans int
		wantErr     bool
	}{
		{"none left", func(n int) answer {
			if n < 3 {
				return answer{key: fmt.Sprintf("k%d", n)}
			}
			return answer{}
		}, 4, 2, false},
		{"fallback key", func(n int) answer { return answer{key: fmt.Sprintf("k%d", n), fallback: n >= 2} }, 3, 1, false},
		{"same key again", func(n int) answer { return answer{key: fmt.Sprintf("k%d", min(n, 1))} }, 3, 1, false},
		{"endless keys", func(n int) answer { return answer{key: fmt.Sprintf("k%d", n)} }, maxRepairClaims, maxRepairClaims - 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			claims := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/_matrix/client/v3/keys/claim" {
					http.NotFound(w, r)
					return
				}
				a := c.answer(claims)
				claims++
				keys := map[string]any{}
				if a.key != "" {
					keys[fmt.Sprintf("signed_curve25519:%s", a.key)] = map[string]any{"key": a.key, "fallback": a.fallback}
				}
				_ = json.NewEncoder(w).Encode(map[string]any{"one_time_keys": map[id.UserID]any{user: map[id.DeviceID]any{device: keys}}})
			}))
			defer srv.Close()
			client, err := mautrix.NewClient(srv.URL, user, "token")
			if err != nil {
				t.Fatal(err)
			}
			client.DeviceID = device
			held := map[id.Curve25519]bool{"k0": true}
			noPace := func(context.Context) error { return nil }
			claimed, orphans, err := (&Manager{}).claimOwnKeys(context.Background(), &crypto.OlmMachine{Client: client}, held, noPace)
			if claims != c.wantClaims || orphans != c.wantOrphans || (err != nil) != c.wantErr {
				t.Errorf("%d claims, %d orphans, %d keys claimed, err %v; want %d claims, %d orphans, error %v",
					claims, orphans, len(claimed), err, c.wantClaims, c.wantOrphans, c.wantErr)
			}
		})
	}
}
