package portal

import (
	"io"
	"net/http"
	"strconv"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/matrix"
)

// forwardedMediaHeaders are the homeserver's response headers a connector
// may need: what the file is, how long, and which part of it (Range).
var forwardedMediaHeaders = []string{
	"Content-Type", "Content-Length", "Content-Disposition", "Content-Range",
	"Accept-Ranges", "Last-Modified", "ETag",
}

// MediaHandler serves Matrix media to connectors under
// connector.MediaPathPrefix. The connector server checks the bearer token
// before this runs. The file is streamed from the homeserver to the
// connector as it arrives, so the bridge holds one copy buffer per
// download, never the file.
func (m *Manager) MediaHandler() http.Handler {
	return http.HandlerFunc(m.serveMedia)
}

func (m *Manager) serveMedia(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	server, mediaID, ok := connector.ParseMediaPath(r.URL.EscapedPath())
	if !ok {
		http.NotFound(w, r)
		return
	}
	if server == connector.EncryptedMediaServer {
		// The handle is a capability: it stays out of the log.
		m.serveEncrypted(w, r, mediaID, m.log.With().Str("component", "media").Bool("encrypted", true).Logger())
		return
	}
	log := m.log.With().Str("component", "media").Str("media_server", server).Str("media_id", mediaID).Logger()
	var upstreamHeader http.Header
	if rng := r.Header.Get("Range"); rng != "" {
		upstreamHeader = http.Header{"Range": []string{rng}}
	}
	resp, ok := m.fetchForConnector(w, r, id.ContentURI{Homeserver: server, FileID: mediaID}, upstreamHeader, log)
	if !ok {
		return
	}
	defer resp.Body.Close()
	limit := m.cfg.Bridge.MaxMediaBytes
	for _, h := range forwardedMediaHeaders {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	n, err := io.Copy(w, &limitedReader{r: resp.Body, left: limit})
	if err != nil {
		// The status is out already; a short body tells the connector.
		log.Warn().Err(err).Int64("bytes", n).Msg("Media stream to the connector broke off")
		return
	}
	log.Debug().Int64("bytes", n).Msg("Served media to the connector")
}

// fetchForConnector opens media on the homeserver for a connector's
// request; when it cannot (not found, homeserver error, over
// bridge.max_media_bytes) it answers the request itself and returns false.
func (m *Manager) fetchForConnector(w http.ResponseWriter, r *http.Request, uri id.ContentURI, header http.Header, log zerolog.Logger) (*http.Response, bool) {
	resp, err := m.mx.Bot().Download(r.Context(), uri, header)
	if err != nil {
		status := http.StatusBadGateway
		if matrix.IsNotFound(err) {
			status = http.StatusNotFound
		}
		log.Warn().Err(err).Int("status", status).Msg("Could not fetch media for the connector")
		http.Error(w, "media not available: "+http.StatusText(status), status)
		return nil, false
	}
	if limit := m.cfg.Bridge.MaxMediaBytes; resp.ContentLength > limit {
		_ = resp.Body.Close()
		log.Warn().Int64("size", resp.ContentLength).Msg("Refusing media over bridge.max_media_bytes")
		http.Error(w, "file is larger than bridge.max_media_bytes ("+strconv.FormatInt(limit, 10)+")", http.StatusRequestEntityTooLarge)
		return nil, false
	}
	return resp, true
}
