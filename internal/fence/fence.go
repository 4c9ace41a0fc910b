// Package fence keeps an HTTP listener of a bridge that may no longer act
// from answering at all. A high-availability active that was paused past its
// lease and then resumed must not send a single byte to the homeserver or to
// a connector, not even an error: a connection still open to it (an old
// keep-alive through the load balancer) would otherwise carry an answer
// from an instance that is no longer in charge. A fenced request gets its
// connection dropped instead, which every client treats as "try again",
// and the retry reaches the new active.
package fence

import (
	"bufio"
	"errors"
	"net"
	"net/http"
)

// ErrFenced is what a fenced response's Write returns.
var ErrFenced = errors.New("fence: this process may not answer any more")

// Handler serves next, but every write of the response first asks gate; once
// gate fails the connection is dropped without another byte. A nil gate
// returns next as it is. Requests for which exempt answers true (readiness
// probes, which must be able to say "not ready") are not fenced.
func Handler(next http.Handler, gate func() error, exempt func(*http.Request) bool) http.Handler {
	if gate == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exempt != nil && exempt(r) {
			next.ServeHTTP(w, r)
			return
		}
		fw := &writer{ResponseWriter: w, gate: gate}
		next.ServeHTTP(fw, r)
		// A handler that wrote nothing gets an implicit 200 from net/http
		// once it returns: that, too, is an answer.
		if !fw.wrote && !fw.dropped {
			fw.pass()
		}
	})
}

// writer checks the gate before anything reaches the connection.
type writer struct {
	http.ResponseWriter
	gate    func() error
	wrote   bool
	dropped bool
}

// pass reports whether the response may go on, dropping the connection the
// first time the gate fails.
func (w *writer) pass() bool {
	if w.dropped {
		return false
	}
	if w.gate() == nil {
		return true
	}
	w.dropped = true
	if !w.wrote {
		// Nothing is buffered yet: take the connection from net/http and
		// close it, so it cannot write even the implicit answer.
		if conn, _, err := http.NewResponseController(w.ResponseWriter).Hijack(); err == nil {
			_ = conn.Close()
			return false
		}
	}
	// Mid-response (or not hijackable): abort the handler, which makes
	// net/http close the connection without finishing the response.
	panic(http.ErrAbortHandler)
}

func (w *writer) WriteHeader(code int) {
	if w.pass() {
		w.wrote = true
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *writer) Write(b []byte) (int, error) {
	if !w.pass() {
		return 0, ErrFenced
	}
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Flush is http.Flusher's, fenced.
func (w *writer) Flush() {
	if w.pass() {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Hijack is http.Hijacker's, fenced: a websocket upgrade writes its answer on
// the hijacked connection, past any later check.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.pass() {
		return nil, nil, ErrFenced
	}
	w.wrote = true
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer's other
// features (deadlines).
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
