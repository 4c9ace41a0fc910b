package connector

import (
	"net/url"
	"strings"
)

// EncryptedMediaServer stands for the server part of the media path of an
// encrypted file the bridge decrypts while a connector fetches it; the media
// id is then an unguessable handle, and the file's keys stay in the bridge.
// A Matrix server name cannot contain "_", so it names no homeserver.
const EncryptedMediaServer = "_encrypted"

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
