package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// hashToken hashes a token so that comparing two of them takes the same
// time whatever their lengths (ConstantTimeCompare returns early on a
// length mismatch).
func hashToken(token string) [32]byte {
	return sha256.Sum256([]byte(token))
}

// tokenSet holds the digests of the shared token and of each connector's own.
type tokenSet struct {
	shared    [32]byte
	hasShared bool
	own       map[string][32]byte // connector id -> digest of its token
}

func newTokenSet(shared string, own map[string]string) (tokenSet, error) {
	ts := tokenSet{shared: hashToken(shared), hasShared: shared != "", own: make(map[string][32]byte, len(own))}
	seen := map[[32]byte]bool{}
	if ts.hasShared {
		seen[ts.shared] = true
	}
	for id, token := range own {
		sum := hashToken(token)
		if id == "" || token == "" || seen[sum] {
			return tokenSet{}, errors.New("connector server: every connector token needs an id and a value distinct from the others")
		}
		seen[sum] = true
		ts.own[id] = sum
	}
	return ts, nil
}

// identity is who a request authenticated as: the shared token (bound
// empty) or the token of one connector id (bound).
type identity struct{ bound string }

// authenticate checks the bearer token against every known token, each in
// constant time. The token itself is never logged, nor is the header that
// carries it.
func (s *Server) authenticate(r *http.Request) (identity, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return identity{}, false
	}
	sum := hashToken(strings.TrimSpace(token))
	var who identity
	found := s.tokens.hasShared && subtle.ConstantTimeCompare(sum[:], s.tokens.shared[:]) == 1
	for id, own := range s.tokens.own {
		if subtle.ConstantTimeCompare(sum[:], own[:]) == 1 {
			who, found = identity{bound: id}, true
		}
	}
	return who, found
}

// mayUse says why who may not act as connectorID, or "" if it may: a
// connector's own token is good for its id only, and an id with a token of
// its own is not open to the shared token.
func (s *Server) mayUse(who identity, connectorID string) string {
	if who.bound != "" {
		if who.bound != connectorID {
			return fmt.Sprintf("this token belongs to connector %q; it cannot be used as %q", who.bound, connectorID)
		}
		return ""
	}
	if _, reserved := s.tokens.own[connectorID]; reserved {
		return fmt.Sprintf("connector %q has a token of its own; the shared token cannot be used for it", connectorID)
	}
	return ""
}

func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request) {
	who, ok := s.authenticate(r)
	if !ok {
		s.log.Warn().Str("remote", r.RemoteAddr).Msg("Refused media request with a missing or wrong token")
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	if reason := s.checkMediaSignature(who, r); reason != "" {
		s.log.Warn().Str("remote", r.RemoteAddr).Str("reason", reason).Msg("Refused media request")
		http.Error(w, reason, http.StatusForbidden)
		return
	}
	if s.opts.Media == nil {
		http.NotFound(w, r)
		return
	}
	s.opts.Media.ServeHTTP(w, r)
}

func (s *Server) serveWebsocket(w http.ResponseWriter, r *http.Request) {
	log := s.log.With().Str("remote", r.RemoteAddr).Logger()
	who, ok := s.authenticate(r)
	if !ok {
		log.Warn().Msg("Refused connector with a missing or wrong token")
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	if !slices.Contains(websocket.Subprotocols(r), connector.Subprotocol) {
		log.Warn().Strs("subprotocols", websocket.Subprotocols(r)).Msg("Refused connector without the dmbridge.v1 subprotocol")
		http.Error(w, "subprotocol "+connector.Subprotocol+" required", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		http.Error(w, "bridge is shutting down", http.StatusServiceUnavailable)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has already answered with an HTTP error.
		log.Warn().Err(err).Msg("Websocket upgrade failed")
		return
	}
	c := newServerConn(s, ws, log)
	c.mediaBase = mediaBaseOf(r)
	c.who = who
	if !s.track(c) {
		c.ws.WriteControl(websocket.CloseMessage, connws.CloseMessage(websocket.CloseGoingAway, "bridge shutting down"), connws.Deadline(connws.WriteWait))
		_ = ws.Close()
		return
	}
	defer s.wg.Done()
	c.run()
}
