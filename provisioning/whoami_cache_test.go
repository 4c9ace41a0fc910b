package provisioning

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
)

// TestWhoamiCached: a token is verified with the homeserver once per TTL,
// a rejected token once per bad TTL, and an outage is not remembered.
func TestWhoamiCached(t *testing.T) {
	var calls atomic.Int32
	outage := false
	c := newWhoamiCache(func(_ context.Context, token string) (id.UserID, error) {
		calls.Add(1)
		switch {
		case outage:
			return "", errors.New("homeserver down")
		case token == "good":
			return "@alice:localhost", nil
		}
		return "", errBadToken
	})
	now := time.Now()
	c.now = func() time.Time { return now }
	ctx := context.Background()
	for range 5 {
		if user, err := c.lookup(ctx, "good"); err != nil || user != "@alice:localhost" {
			t.Fatalf("good token: %q %v", user, err)
		}
		if _, err := c.lookup(ctx, "bad"); !errors.Is(err, errBadToken) {
			t.Fatalf("bad token: %v", err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d homeserver calls for 10 lookups of 2 tokens, want 2", n)
	}
	now = now.Add(whoamiBadTTL + time.Second)
	_, _ = c.lookup(ctx, "bad")
	_, _ = c.lookup(ctx, "good")
	if n := calls.Load(); n != 3 {
		t.Errorf("after the bad TTL: %d calls, want 3 (the bad token asked again, the good one cached)", n)
	}
	now = now.Add(whoamiTTL)
	outage = true
	for range 2 {
		if _, err := c.lookup(ctx, "good"); err == nil || errors.Is(err, errBadToken) {
			t.Fatalf("during an outage: %v", err)
		}
	}
	if n := calls.Load(); n != 5 {
		t.Errorf("an outage was cached: %d calls, want 5", n)
	}
}

// TestWhoamiBounded: only whoamiConcurrency checks run at once (the rest
// are answered busy), and random tokens cannot grow the cache past its cap.
func TestWhoamiBounded(t *testing.T) {
	release := make(chan struct{})
	var running, peak atomic.Int32
	c := newWhoamiCache(func(_ context.Context, token string) (id.UserID, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return "", errBadToken
	})
	var wg sync.WaitGroup
	var busy atomic.Int32
	for i := range 3 * whoamiConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.lookup(context.Background(), fmt.Sprint("t", i)); errors.Is(err, errBusy) {
				busy.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for busy.Load() < 2*whoamiConcurrency && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if p := peak.Load(); p > whoamiConcurrency {
		t.Errorf("%d checks ran at once, want at most %d", p, whoamiConcurrency)
	}
	if b := busy.Load(); b != 2*whoamiConcurrency {
		t.Errorf("%d requests answered busy, want %d", b, 2*whoamiConcurrency)
	}

	small := newWhoamiCache(func(context.Context, string) (id.UserID, error) { return "", errBadToken })
	small.maxEntries = 10
	for i := range 100 {
		_, _ = small.lookup(context.Background(), fmt.Sprint("random-", i))
	}
	if n := len(small.entries); n > 10 {
		t.Errorf("cache holds %d entries, cap 10", n)
	}
}

// TestProvisioningVerifiesTokenOnce: repeated requests with one access
// token reach the homeserver's whoami once, not once per request.
func TestProvisioningVerifiesTokenOnce(t *testing.T) {
	var calls atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_matrix/client/v3/account/whoami" {
			http.NotFound(w, r)
			return
		}
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer alice-access-token" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token"}`))
			return
		}
		_, _ = w.Write([]byte(`{"user_id":"@alice:localhost"}`))
	}))
	defer hs.Close()
	starter := &fakeStarter{}
	a := newTestAPI(starter)
	a.cfg.Homeserver.Address = hs.URL
	a = New(a.cfg, starter, zerolog.Nop())
	for range 5 {
		if code, out := call(t, a, http.MethodPost, "", "alice-access-token", `{"identifier":"bob"}`); code != http.StatusOK {
			t.Fatalf("start-chat: %d %v", code, out)
		}
		if code, _ := call(t, a, http.MethodPost, "", "wrong-token", `{"identifier":"bob"}`); code != http.StatusUnauthorized {
			t.Fatalf("wrong token: %d", code)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d whoami calls for 10 requests with 2 tokens, want 2", n)
	}
}
