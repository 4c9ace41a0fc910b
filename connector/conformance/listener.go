package conformance

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
)

// listener is the suite's HTTP endpoint. It refuses connections the way the
// bridge does (401 for the token, 400 for the subprotocol) and hands every
// upgraded websocket to the suite in arrival order.
type listener struct {
	token    string
	maxFrame int64
	ln       net.Listener
	srv      *http.Server
	upgrader websocket.Upgrader

	// queue never blocks the HTTP handler: a connector that reconnects
	// while the suite is busy just waits in line.
	mu       sync.Mutex
	queue    []*session
	arrived  chan struct{} // closed and replaced when queue grows
	refusals []string      // why connection attempts were refused, for the hello check
	closed   bool
}

func listen(addr, token string, maxFrame int64) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	l := &listener{
		token:    token,
		maxFrame: maxFrame,
		ln:       ln,
		arrived:  make(chan struct{}),
		upgrader: websocket.Upgrader{Subprotocols: []string{connector.Subprotocol}},
	}
	// The conformance tool may listen beyond loopback: bound silent clients.
	l.srv = &http.Server{Handler: l, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = l.srv.Serve(ln) }()
	return l, nil
}

// url is what connectors dial.
func (l *listener) url() string {
	return "ws://" + l.ln.Addr().String() + connector.Path
}

func (l *listener) close() {
	_ = l.srv.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, s := range l.queue {
		s.kill()
	}
	l.queue = nil
}

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != connector.Path {
		l.refuse(fmt.Sprintf("request for %s instead of %s", r.URL.Path, connector.Path))
		http.NotFound(w, r)
		return
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(l.token)) != 1 {
		l.refuse("HTTP 401: missing or wrong bearer token")
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	if offered := websocket.Subprotocols(r); !slices.Contains(offered, connector.Subprotocol) {
		l.refuse(fmt.Sprintf("HTTP 400: subprotocols %q lack %s", offered, connector.Subprotocol))
		http.Error(w, "subprotocol "+connector.Subprotocol+" required", http.StatusBadRequest)
		return
	}
	ws, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		l.refuse("websocket upgrade failed: " + err.Error())
		return
	}
	s := newSession(ws, l.maxFrame)
	l.mu.Lock()
	if l.closed {
		// Upgraded while the suite was shutting down: nobody will take it.
		l.mu.Unlock()
		s.kill()
		return
	}
	l.queue = append(l.queue, s)
	close(l.arrived)
	l.arrived = make(chan struct{})
	l.mu.Unlock()
}

func (l *listener) refuse(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refusals = append(l.refusals, why)
}

// takeRefusals returns and forgets the refusals so far.
func (l *listener) takeRefusals() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.refusals
	l.refusals = nil
	return out
}

// next returns the oldest connection not taken yet, and a channel that is
// closed when a new one arrives if there is none.
func (l *listener) next() (*session, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		return nil, l.arrived
	}
	s := l.queue[0]
	l.queue = l.queue[1:]
	return s, nil
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
