package bridge_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// hsProxy stands between the bridge and Dendrite to fake homeserver faults:
// an outage (every request gets a 502 or a dropped connection) and refusals
// of chosen requests. Users' clients talk to Dendrite directly.
type hsProxy struct {
	srv  *httptest.Server
	down atomic.Bool
	// turned counts the requests turned away while down.
	turned atomic.Int64

	mu sync.Mutex
	// refuse, if set, may answer a request itself: a status and errcode.
	refuse func(r *http.Request, body []byte) (int, string)
	// refused counts the refusals per errcode.
	refused map[string]int
	// answer, if set, may answer a request itself with a 200 and the JSON
	// of what it returns (non-nil), without Dendrite seeing the request: a
	// homeserver that accepts a request and does not act on it.
	answer func(r *http.Request, body []byte) any
	// rewrite, if set, may replace a request's body before Dendrite sees
	// it (nil keeps it).
	rewrite func(r *http.Request, body []byte) []byte
}

func newHSProxy(t testing.TB, target string) *hsProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &hsProxy{refused: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			if p.turned.Add(1)%2 == 0 {
				http.Error(w, "homeserver down (test proxy)", http.StatusBadGateway)
				return
			}
			// Drop the connection without an answer, as a crashed server does.
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			http.Error(w, "homeserver down (test proxy)", http.StatusBadGateway)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		p.mu.Lock()
		refuse, answer, rewrite := p.refuse, p.answer, p.rewrite
		p.mu.Unlock()
		if rewrite != nil {
			if changed := rewrite(r, body); changed != nil {
				body = changed
				r.Body = io.NopCloser(bytes.NewReader(body))
				r.ContentLength = int64(len(body))
			}
		}
		if answer != nil {
			if resp := answer(r, body); resp != nil {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(resp)
				return
			}
		}
		if refuse != nil {
			if status, code := refuse(r, body); status != 0 {
				p.mu.Lock()
				p.refused[code]++
				p.mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_ = json.NewEncoder(w).Encode(map[string]string{"errcode": code, "error": "refused by the test proxy"})
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *hsProxy) setRefuse(f func(r *http.Request, body []byte) (int, string)) {
	p.mu.Lock()
	p.refuse = f
	p.mu.Unlock()
}

func (p *hsProxy) setAnswer(f func(r *http.Request, body []byte) any) {
	p.mu.Lock()
	p.answer = f
	p.mu.Unlock()
}

func (p *hsProxy) setRewrite(f func(r *http.Request, body []byte) []byte) {
	p.mu.Lock()
	p.rewrite = f
	p.mu.Unlock()
}

func (p *hsProxy) refusals(code string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused[code]
}

// asProxy stands between Dendrite and the bridge's appservice listener, so
// that a test can lose a transaction as a homeserver or the network might:
// Dendrite gets its 200 and never sends it again, the bridge never sees it.
type asProxy struct {
	srv *httptest.Server
	mu  sync.Mutex
	// drop, if set, decides on each request body; a dropped one is answered
	// 200 {} without reaching the bridge.
	drop func(body []byte) bool
	// dropped counts the requests dropped.
	dropped atomic.Int32
}

// newASProxy forwards to the bridge's appservice listener at target.
func newASProxy(t testing.TB, target string) *asProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &asProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		p.mu.Lock()
		drop := p.drop
		p.mu.Unlock()
		if drop != nil && drop(body) {
			p.dropped.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{}"))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *asProxy) setDrop(f func(body []byte) bool) {
	p.mu.Lock()
	p.drop = f
	p.mu.Unlock()
}
