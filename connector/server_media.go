package connector

import (
	"net/http"
	"net/url"
	"strings"
)

// MediaPath is the path under which the bridge serves one piece of Matrix
// media to connectors. Both parts are escaped, so that a media id can never
// step out of the prefix.
func MediaPath(server, mediaID string) string {
	return MediaPathPrefix + url.PathEscape(server) + "/" + url.PathEscape(mediaID)
}

// ParseMediaPath is the inverse of MediaPath; ok is false for anything that is
// not exactly "<prefix><server>/<media id>".
func ParseMediaPath(escapedPath string) (server, mediaID string, ok bool) {
	rest, found := strings.CutPrefix(escapedPath, MediaPathPrefix)
	if !found {
		return "", "", false
	}
	rawServer, rawID, found := strings.Cut(rest, "/")
	if !found || rawServer == "" || rawID == "" || strings.Contains(rawID, "/") {
		return "", "", false
	}
	var err error
	if server, err = url.PathUnescape(rawServer); err != nil {
		return "", "", false
	}
	if mediaID, err = url.PathUnescape(rawID); err != nil {
		return "", "", false
	}
	return server, mediaID, true
}

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
func (s *Server) MediaURL(connectorID, server, mediaID string) (string, bool) {
	c := s.live(connectorID)
	if c == nil || c.mediaBase == "" {
		return "", false
	}
	return c.mediaBase + MediaPath(server, mediaID), true
}
