package fence

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawRequest sends one GET for path over a fresh TCP connection and returns
// every byte the server sent before closing it.
func rawRequest(t *testing.T, addr, path string) []byte {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	got, err := io.ReadAll(conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatal(err)
	}
	return got
}

// switchableGate is a gate that is open until closed is set, as the lease
// check is until the lease is lost.
func switchableGate() (closed *atomic.Bool, gate func() error) {
	closed = new(atomic.Bool)
	return closed, func() error {
		if closed.Load() {
			return errors.New("lost")
		}
		return nil
	}
}

func TestFencedAnswersNothing(t *testing.T) {
	closed, gate := switchableGate()
	mux := http.NewServeMux()
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"errcode":"M_UNKNOWN"}`)
	})
	mux.HandleFunc("/silent", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	})
	exempt := func(r *http.Request) bool { return r.URL.Path == "/ready" }
	srv := httptest.NewServer(Handler(mux, gate, exempt))
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	for _, path := range []string{"/json", "/silent", "/ready"} {
		if got := rawRequest(t, addr, path); !strings.HasPrefix(string(got), "HTTP/1.1 ") {
			t.Errorf("%s with the gate open: got %q, want an answer", path, got)
		}
	}
	closed.Store(true)
	for _, path := range []string{"/json", "/silent"} {
		if got := rawRequest(t, addr, path); len(got) != 0 {
			t.Errorf("%s with the gate shut: the server sent %d bytes (%q), want none", path, len(got), got)
		}
	}
	if got := rawRequest(t, addr, "/ready"); !strings.HasPrefix(string(got), "HTTP/1.1 503") {
		t.Errorf("exempt /ready with the gate shut: got %q, want its 503", got)
	}
}

// A response that started before the gate shut is cut off: the client never
// gets a complete answer it could mistake for a finished one.
func TestFencedMidResponse(t *testing.T) {
	closed, gate := switchableGate()
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first part\n")
		http.NewResponseController(w).Flush()
		closed.Store(true)
		_, _ = io.WriteString(w, "second part\n")
	}), gate, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the response ended cleanly with %q; want it cut off", body)
	}
	if strings.Contains(string(body), "second") {
		t.Errorf("got %q after the gate shut", body)
	}
}

// A websocket-style upgrade hijacks the connection and writes its answer
// there: a shut gate refuses the hijack.
func TestFencedHijack(t *testing.T) {
	closed, gate := switchableGate()
	hijackErr := make(chan error, 1)
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		hijackErr <- err
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 101 Switching Protocols\r\n\r\n")
		_ = buf.Flush()
	}), gate, nil))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	if got := rawRequest(t, addr, "/"); !strings.HasPrefix(string(got), "HTTP/1.1 101") || <-hijackErr != nil {
		t.Fatalf("open gate: got %q", got)
	}
	closed.Store(true)
	if got := rawRequest(t, addr, "/"); len(got) != 0 {
		t.Errorf("shut gate: the server sent %q, want nothing", got)
	}
	if err := <-hijackErr; !errors.Is(err, ErrFenced) {
		t.Errorf("shut gate: Hijack returned %v, want ErrFenced", err)
	}
}

func TestNilGateIsNext(t *testing.T) {
	h := http.NotFoundHandler()
	if fmt.Sprintf("%p", Handler(h, nil, nil)) != fmt.Sprintf("%p", h) {
		t.Error("a nil gate should leave the handler as it is")
	}
}
