package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// mediaBaseOf is the scheme and host a connector used to reach the listener.
// Media URLs are built on it rather than on the configured listen address,
// which may be a wildcard such as 0.0.0.0 that no connector can dial.
func mediaBaseOf(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// MediaURL is the absolute URL, on the listener as connectorID's live
// connection reached it, under which that connector fetches the media.
// ok is false while the connector is not connected.
//
// The URL is signed for this connector and expires after MediaURLTTL, so a
// token holder can fetch only what the bridge handed to it, and only for a
// while; a command that is sent again gets a fresh URL.
func (s *Server) MediaURL(connectorID, server, mediaID string) (string, bool) {
	c := s.live(connectorID)
	if c == nil || c.mediaBase == "" {
		return "", false
	}
	expires := time.Now().Add(s.opts.MediaURLTTL).Unix()
	q := url.Values{}
	q.Set(mediaQueryConnector, connectorID)
	q.Set(mediaQueryExpires, strconv.FormatInt(expires, 10))
	q.Set(mediaQuerySig, s.mediaSignature(connectorID, server, mediaID, expires))
	return c.mediaBase + connector.MediaPath(server, mediaID) + "?" + q.Encode(), true
}

// The query parameters of a signed media URL.
const (
	mediaQueryConnector = "connector"
	mediaQueryExpires   = "expires"
	mediaQuerySig       = "sig"
)

// mediaSignature is the HMAC-SHA256 of everything a media URL grants, with
// NUL separators (none of the parts can contain one unescaped).
func (s *Server) mediaSignature(connectorID, server, mediaID string, expires int64) string {
	mac := hmac.New(sha256.New, s.mediaKey)
	for _, part := range []string{connectorID, server, mediaID, strconv.FormatInt(expires, 10)} {
		mac.Write([]byte(part))
		mac.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// checkMediaSignature says why a media request is refused, or "" if its
// URL is one the bridge signed for a connector the token may act as, and
// has not expired.
func (s *Server) checkMediaSignature(who identity, r *http.Request) string {
	server, mediaID, ok := connector.ParseMediaPath(r.URL.EscapedPath())
	if !ok {
		return "not a media URL the bridge handed out"
	}
	q := r.URL.Query()
	connectorID := q.Get(mediaQueryConnector)
	if connectorID == "" {
		return "media URL is not signed"
	}
	if reason := s.mayUse(who, connectorID); reason != "" {
		return reason
	}
	expires, err := strconv.ParseInt(q.Get(mediaQueryExpires), 10, 64)
	if err != nil {
		return "media URL is not signed"
	}
	want := s.mediaSignature(connectorID, server, mediaID, expires)
	if !hmac.Equal([]byte(q.Get(mediaQuerySig)), []byte(want)) {
		return "media URL signature is not valid"
	}
	if time.Now().Unix() > expires {
		return "media URL has expired"
	}
	return ""
}
