// Package fence keeps an HTTP listener of a bridge that may no longer act
// from answering at all. A high-availability active that was paused past its
// lease and then resumed must not send a single byte to the homeserver or to
// a connector, not even an error: a connection still open to it (an old
// keep-alive through the load balancer) would otherwise carry an answer
// from an instance that is no longer in charge. A fenced request gets its
// connection dropped instead, which every client treats as "try again",
// and the retry reaches the new active. Transport does the same for the
// requests such a process makes.
package fence

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// ErrFenced is what a fenced response's Write returns.
var ErrFenced = errors.New("fence: this process may not answer any more")

// maxHeld is how much of a response is held back until the handler returns.
// Answers to the homeserver and the connectors are far smaller; a larger
// body (media) streams, each write checked and flushed at once.
const maxHeld = 64 << 10

// Handler serves next, but every write of the response first asks gate; once
// gate fails the connection is dropped without another byte. A nil gate
// returns next as it is. Requests for which exempt answers true (readiness
// probes, which must be able to say "not ready") are not fenced.
//
// A response is held back until the handler returns and goes out right after
// one last check, in one write. net/http would otherwise send it only then,
// from its buffers, and a handler keeps working after its answer (the intake
// wakes the dispatcher and hands over ephemeral events): a process paused
// there and resumed after losing its lease sent an answer checked before the
// pause. What is left is the moment between the last check and the write
// system call, a few microseconds with nothing in between that waits.
func Handler(next http.Handler, gate func() error, exempt func(*http.Request) bool) http.Handler {
	if gate == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exempt != nil && exempt(r) {
			next.ServeHTTP(w, r)
			return
		}
		fw := &writer{ResponseWriter: w, gate: gate, head: r.Method == http.MethodHead}
		next.ServeHTTP(fw, r)
		// A handler that wrote nothing gets an implicit 200 from net/http
		// once it returns: that, too, is an answer.
		if !fw.dropped && !fw.hijacked && fw.pass() {
			fw.send(true)
		}
	})
}

// writer checks the gate before anything reaches the connection, and holds
// the response back (see Handler) until it is sent.
type writer struct {
	http.ResponseWriter
	gate func() error
	// head: the request is a HEAD, whose answer's length is the GET's.
	head bool
	// status and held are the response as the handler wrote it, before it
	// is sent; status is 0 until the handler writes.
	status int
	held   []byte
	// sent: the header went to net/http (a flush, a large body or the
	// handler's end); every later write goes straight out.
	sent     bool
	hijacked bool
	dropped  bool
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
	if !w.sent {
		// Nothing went to net/http yet: take the connection from it and
		// close it, so it cannot write even the implicit answer.
		if conn, _, err := http.NewResponseController(w.ResponseWriter).Hijack(); err == nil {
			_ = conn.Close()
			return false
		}
	}
	// Mid-response (or not hijackable): abort the handler, which makes
	// net/http close the connection without finishing the response. Every
	// write before went out at once (send, Write), so its buffers hold
	// nothing it would flush on closing.
	panic(http.ErrAbortHandler)
}

// send hands the held response to net/http and flushes it to the
// connection. whole: the handler is done, so the body's length is known and
// the answer goes out with it, complete, instead of chunked.
func (w *writer) send(whole bool) {
	if w.sent {
		return
	}
	w.sent = true
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if whole && w.lengthKnown() {
		w.Header().Set("Content-Length", strconv.Itoa(len(w.held)))
	}
	w.ResponseWriter.WriteHeader(w.status)
	if len(w.held) > 0 {
		_, _ = w.ResponseWriter.Write(w.held)
		w.held = nil
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// lengthKnown reports whether the held body is the whole body, to be sent
// with its length, under the rules net/http follows for a handler that
// returned: not when the handler framed it itself, not with trailers (they
// need chunking), and not for a HEAD the handler wrote nothing for: it may
// have skipped the body because it is a HEAD, and Content-Length: 0 would
// tell the client the GET's body is empty.
func (w *writer) lengthKnown() bool {
	h := w.Header()
	if h.Get("Content-Length") != "" || h.Get("Transfer-Encoding") != "" || !bodyAllowed(w.status) {
		return false
	}
	if w.head && len(w.held) == 0 {
		return false
	}
	if len(h.Values("Trailer")) > 0 {
		return false
	}
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return false
		}
	}
	return true
}

// bodyAllowed is false for the statuses that carry no body (RFC 9110).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func (w *writer) WriteHeader(code int) {
	if !w.pass() {
		return
	}
	switch {
	case w.sent:
		w.ResponseWriter.WriteHeader(code) // superfluous; net/http logs it
	case code >= 100 && code < 200 && code != http.StatusSwitchingProtocols:
		// An informational answer goes out at once in net/http too.
		w.ResponseWriter.WriteHeader(code)
	case w.status == 0:
		w.status = code
	}
}

func (w *writer) Write(b []byte) (int, error) {
	if !w.pass() {
		return 0, ErrFenced
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if !w.sent && len(w.held)+len(b) <= maxHeld {
		w.held = append(w.held, b...)
		return len(b), nil
	}
	w.send(false)
	n, err := w.ResponseWriter.Write(b)
	if err == nil {
		err = http.NewResponseController(w.ResponseWriter).Flush()
	}
	return n, err
}

// Flush is http.Flusher's, fenced: it sends what is held.
func (w *writer) Flush() {
	if w.pass() {
		w.send(false)
	}
}

// Hijack is http.Hijacker's, fenced: a websocket upgrade writes its answer on
// the hijacked connection, and the connection it returns asks the gate
// before every write too, right before the system call: a frame checked
// before a pause (or queued behind a write lock) does not go out after it.
// What the handler wrote before goes out first, as net/http's own Hijack
// does.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.pass() {
		return nil, nil, ErrFenced
	}
	if w.status != 0 {
		w.send(false)
	}
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	gc := gatedConn{Conn: conn, gate: w.gate}
	return gc, bufio.NewReadWriter(rw.Reader, bufio.NewWriterSize(gc, rw.Writer.Size())), nil
}

// Unwrap lets http.ResponseController reach the underlying writer's other
// features (deadlines).
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
