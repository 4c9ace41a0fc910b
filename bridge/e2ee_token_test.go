package bridge_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestGhostDeviceTokenDropped: the ghost's device is logged out on Dendrite
// (which drops its access token and its keys). The device's /sync, refused
// with M_UNKNOWN_TOKEN, logs the ghost in again as the same device and puts
// the same identity keys back, instead of polling with the dead token until
// a restart; the contact's next message, under a new room key (the room
// rotates keys every message) that must be claimed and sent with the
// device's token, reaches the user encrypted by that same device.
func TestGhostDeviceTokenDropped(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{encryption: true})
		ctx := context.Background()
		f, ghost, nio, dev := rotatingEncryptedDM(t, s)
		keys := ghostDeviceKeys(ctx, t, s, ghost, dev.DeviceID)
		if keys == nil {
			t.Fatalf("no keys on the homeserver for the ghost's device %s", dev.DeviceID)
		}

		logOutDevice(ctx, t, s, ghost, dev.AccessToken)
		if ghostDeviceKeys(ctx, t, s, ghost, dev.DeviceID) != nil {
			t.Fatal("Dendrite kept the keys of the device it logged out")
		}
		// The device's long poll in flight ends within its 30 s timeout;
		// the next one is refused.
		tesths.WaitFor(t, 90*time.Second, "the ghost's device logged in again with its keys", func() (bool, error) {
			row, err := s.br.DB.GhostDev.Get(ctx, ghost)
			if err != nil || row == nil || row.AccessToken == dev.AccessToken {
				return false, err
			}
			if row.DeviceID != dev.DeviceID {
				t.Fatalf("ghost device is now %s, want %s again", row.DeviceID, dev.DeviceID)
			}
			return ghostDeviceKeys(ctx, t, s, ghost, dev.DeviceID) != nil, nil
		})
		if again := ghostDeviceKeys(ctx, t, s, ghost, dev.DeviceID); again.GetEd25519(dev.DeviceID) != keys.GetEd25519(dev.DeviceID) ||
			again.GetCurve25519(dev.DeviceID) != keys.GetCurve25519(dev.DeviceID) {
			t.Fatalf("device keys after logging in again = %v, want the same as before %v", again, keys)
		}
		f.send(textFrom("bob@network", "r2", "after the logout"))
		expectFromGhostDevice(t, s, nio, ghost, "after the logout")
		if loops := s.br.E2EE.SyncLoops(); loops != 1 {
			t.Errorf("%d ghost /sync loops, want the one of the renewed device", loops)
		}
		if n := s.br.E2EE.RenewFailures(); n != 0 {
			t.Errorf("%d failed renewals", n)
		}
		// Served while encryption is on, at 0 when nothing failed.
		r := scrape(t, "http://"+s.br.MetricsAddr().String()+"/metrics")
		if r["dmbridge_ghost_device_renew_failures_total"] == nil {
			t.Error("dmbridge_ghost_device_renew_failures_total is not served")
		}
		wantValue(t, r, "dmbridge_ghost_device_renew_failures_total", nil, 0)
	})
}

// TestGhostDeviceTokenDroppedLoginRefused: when the homeserver also refuses
// the login again, the device's /sync loop stops instead of polling with the
// dead token, and the failure is counted (on the metrics endpoint too)
// and logged. The ghost's next
// message, once the homeserver takes logins again, gets it a new device and
// reaches the user encrypted by it.
func TestGhostDeviceTokenDroppedLoginRefused(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{encryption: true, hsProxy: true})
		ctx := context.Background()
		f, ghost, nio, dev := rotatingEncryptedDM(t, s)

		s.proxy.setRefuse(func(r *http.Request, _ []byte) (int, string) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/login") {
				return http.StatusForbidden, "M_FORBIDDEN"
			}
			return 0, ""
		})
		logOutDevice(ctx, t, s, ghost, dev.AccessToken)
		tesths.WaitFor(t, 90*time.Second, "the failed renewal counted and the loop stopped", func() (bool, error) {
			return s.br.E2EE.RenewFailures() == 1 && s.br.E2EE.SyncLoops() == 0, nil
		})
		// The operator sees it where they look: on the metrics endpoint.
		waitMetric(t, "http://"+s.br.MetricsAddr().String()+"/metrics", "dmbridge_ghost_device_renew_failures_total", nil, 1)

		s.proxy.setRefuse(nil)
		f.send(textFrom("bob@network", "r2", "after the logout"))
		_, now := expectFromGhostDevice(t, s, nio, ghost, "after the logout")
		if now.DeviceID == dev.DeviceID {
			t.Errorf("the ghost still uses its logged-out device %s", dev.DeviceID)
		}
		if loops := s.br.E2EE.SyncLoops(); loops != 1 {
			t.Errorf("%d ghost /sync loops, want the one of the new device", loops)
		}
	})
}

// rotatingEncryptedDM starts alice's encrypted DM with bob's ghost from
// her own client, with the room key rotated at every message, and waits
// for bob's first message encrypted by the ghost's device.
func rotatingEncryptedDM(t *testing.T, s *stack) (*fakeConnector, id.UserID, *nioClient, *database.GhostDevice) {
	t.Helper()
	f := s.connectFake(nil)
	ghost := s.ghost("bob@network")
	nio := startNio(t, s, "alice")
	nio.do(map[string]any{"cmd": "create_dm", "ghost": string(ghost), "text": "hi bob", "rotation_msgs": 1})
	waitSent(t, f, 1)
	f.send(textFrom("bob@network", "r1", "before the logout"))
	_, dev := expectFromGhostDevice(t, s, nio, ghost, "before the logout")
	return f, ghost, nio, dev
}

// logOutDevice logs the ghost's device with token out on the homeserver,
// as its owner would.
func logOutDevice(ctx context.Context, t *testing.T, s *stack, ghost id.UserID, token string) {
	t.Helper()
	dead, err := mautrix.NewClient(s.hs.URL, ghost, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = dead.Logout(ctx); err != nil {
		t.Fatalf("log the ghost's device out: %v", err)
	}
}

// ghostDeviceKeys are the keys the homeserver publishes for the ghost's
// device, as alice's client asks for them; nil when it has none.
func ghostDeviceKeys(ctx context.Context, t *testing.T, s *stack, ghost id.UserID, device id.DeviceID) mautrix.KeyMap {
	t.Helper()
	resp, err := s.alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{ghost: {}}})
	if err != nil {
		t.Fatalf("query the ghost's keys: %v", err)
	}
	keys, ok := resp.DeviceKeys[ghost][device]
	if !ok {
		return nil
	}
	return keys.Keys
}

// TestGhostDeviceTokenDroppedKeyUploadRefused: the homeserver takes the
// login again as the same device but refuses the upload of its keys. The
// renewal fails and is counted; the ghost's next message gets it a new
// device. The device logged in again (valid token, no keys) must not stay
// behind on the homeserver, in the user's list of the ghost's devices.
func TestGhostDeviceTokenDroppedKeyUploadRefused(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{encryption: true, hsProxy: true})
		ctx := context.Background()
		f, ghost, nio, dev := rotatingEncryptedDM(t, s)
		s.proxy.setRefuse(func(r *http.Request, _ []byte) (int, string) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/keys/upload") {
				return http.StatusForbidden, "M_FORBIDDEN"
			}
			return 0, ""
		})
		logOutDevice(ctx, t, s, ghost, dev.AccessToken)
		tesths.WaitFor(t, 90*time.Second, "the failed renewal counted and the loop stopped", func() (bool, error) {
			return s.br.E2EE.RenewFailures() == 1 && s.br.E2EE.SyncLoops() == 0, nil
		})

		s.proxy.setRefuse(nil)
		f.send(textFrom("bob@network", "r2", "after the logout"))
		_, now := expectFromGhostDevice(t, s, nio, ghost, "after the logout")
		if now.DeviceID == dev.DeviceID {
			t.Errorf("the ghost still uses its device %s without keys", dev.DeviceID)
		}
		if n := ghostDevices(ctx, t, s, ghost); n != 1 {
			t.Errorf("the ghost has %d devices on the homeserver, want only its new one %s (the one logged in again without keys stayed)", n, now.DeviceID)
		}
	})
}
