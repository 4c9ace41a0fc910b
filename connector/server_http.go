package connector

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/websocket"
)

// hashToken hashes a token so that comparing two of them takes the same
// time whatever their lengths (ConstantTimeCompare returns early on a
// length mismatch).
func hashToken(token string) [32]byte {
	return sha256.Sum256([]byte(token))
}

// authorized checks the bearer token in constant time. The token itself is
// never logged, nor is the header that carries it.
func (s *Server) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := hashToken(strings.TrimSpace(token))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.log.Warn().Str("remote", r.RemoteAddr).Msg("Refused media request with a missing or wrong token")
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
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
	if !s.authorized(r) {
		log.Warn().Msg("Refused connector with a missing or wrong token")
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	if !slices.Contains(websocket.Subprotocols(r), Subprotocol) {
		log.Warn().Strs("subprotocols", websocket.Subprotocols(r)).Msg("Refused connector without the dmbridge.v1 subprotocol")
		http.Error(w, "subprotocol "+Subprotocol+" required", http.StatusBadRequest)
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
	if !s.track(c) {
		c.ws.WriteControl(websocket.CloseMessage, closeMessage(websocket.CloseGoingAway, "bridge shutting down"), deadline(writeWait))
		_ = ws.Close()
		return
	}
	defer s.wg.Done()
	c.run()
}
