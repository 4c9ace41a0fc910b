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
// getAll GETs srv's root, closes srv, and returns the response with all
// of its body that arrived and the error that ended the reading, if any.
func getAll(t *testing.T, srv *httptest.Server) (*http.Response, []byte, error) {
	t.Helper()
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

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
	_, body, err := getAll(t, srv)
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

// TestFencedAfterTheAnswer plays the paused active of the high-availability
// fault test: the handler answers 200 {} while the gate is open, then, still
// running (the intake wakes the dispatcher and hands over ephemeral events
// after its answer), is stopped while its lease runs out. net/http sends a
// buffered answer only once the handler returns, so without a last check
// the answer went out after the gate had shut.
func TestFencedAfterTheAnswer(t *testing.T) {
	closed, gate := switchableGate()
	answered, resume := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "{}")
		close(answered)
		// The work after the answer, during which the process is paused.
		<-resume
	}), gate, nil))
	defer srv.Close()
	got := make(chan []byte, 1)
	go func() { got <- rawRequest(t, srv.Listener.Addr().String(), "/") }()
	<-answered
	closed.Store(true)
	close(resume)
	if b := <-got; len(b) != 0 {
		t.Errorf("the gate shut before the handler returned, yet the server sent %q; want nothing", b)
	}
}

// An answer whose gate stays open is a plain, complete HTTP/1.1 response
// with its length, not a chunked one: holding it back until the handler
// returns must not change what the client gets.
func TestOpenGateAnswersWhole(t *testing.T) {
	_, gate := switchableGate()
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"a":`)
		_, _ = io.WriteString(w, `1}`)
	}), gate, nil))
	resp, body, err := getAll(t, srv)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated || string(body) != `{"a":1}` || resp.ContentLength != int64(len(body)) ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("got %d %q (length %d, type %q), want 201 {\"a\":1} with its length",
			resp.StatusCode, body, resp.ContentLength, resp.Header.Get("Content-Type"))
	}
}

// A large body (media served to a connector) is not held in memory: past
// maxHeld it streams, so the client has the first part while the handler
// still writes, each later write is checked, and a gate that shuts cuts the
// body off.
func TestFencedLargeBodyStreams(t *testing.T) {
	closed, gate := switchableGate()
	chunk := strings.Repeat("x", maxHeld)
	clientGot := make(chan struct{})
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(4*len(chunk)))
		_, _ = io.WriteString(w, chunk)
		_, _ = io.WriteString(w, chunk)
		select {
		case <-clientGot:
		case <-time.After(10 * time.Second):
			t.Error("the client did not get the first part while the handler ran: the body was held back")
		}
		closed.Store(true)
		_, _ = io.WriteString(w, chunk)
		_, _ = io.WriteString(w, chunk)
	}), gate, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len(chunk))
	if _, err = io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	close(clientGot)
	rest, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the response ended cleanly with %d bytes; want it cut off", len(first)+len(rest))
	}
	if n := len(first) + len(rest); n > 2*len(chunk) {
		t.Errorf("got %d bytes, more than the %d written before the gate shut", n, 2*len(chunk))
	}
}

// A hijacked connection (a connector's websocket) stays fenced: a frame
// written after the gate shut does not go out, even though the upgrade
// passed the gate; the connection is closed instead.
func TestFencedHijackedConnection(t *testing.T) {
	closed, gate := switchableGate()
	upgraded, shut := make(chan struct{}), make(chan struct{})
	writeErr := make(chan error, 1)
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			writeErr <- err
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\n\r\n")
		close(upgraded)
		<-shut
		_, err = io.WriteString(conn, "frame after the gate shut")
		writeErr <- err
	}), gate, nil))
	defer srv.Close()
	got := make(chan []byte, 1)
	go func() { got <- rawRequest(t, srv.Listener.Addr().String(), "/") }()
	<-upgraded
	closed.Store(true)
	close(shut)
	if err := <-writeErr; !errors.Is(err, ErrFenced) {
		t.Errorf("write on the hijacked connection with the gate shut: %v, want ErrFenced", err)
	}
	if b := string(<-got); b != "HTTP/1.1 101 Switching Protocols\r\n\r\n" {
		t.Errorf("the client got %q, want only the upgrade", b)
	}
}
