package xmppconnector

import (
	"context"
	"errors"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// avatarPath is where contact pictures are served, followed by their SHA-1.
const avatarPath = "/avatar/"

var sha1Hex = regexp.MustCompile(`^[0-9a-f]{40}$`)

// avatarHandler serves stored contact pictures. XMPP carries avatars as
// bytes inside vCards, while the protocol's avatar object is a URL that
// the bridge fetches; this is that URL. Pictures are addressed by content
// hash, so they never change and may be cached forever.
type avatarHandler struct {
	store *Store
	log   zerolog.Logger
}

func (h avatarHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, avatarPath)
	if !ok || !sha1Hex.MatchString(id) || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	mt, data, found, err := h.store.Avatar(r.Context(), id)
	if err != nil {
		h.log.Error().Err(err).Msg("Could not load avatar")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if !found {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", mt)
	// Only pictures are stored (contacts.go), and nothing here is for a
	// browser to run, even one that guesses types or opens the URL itself.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	_, _ = w.Write(data)
}

// serveAvatars runs the avatar endpoint until ctx ends.
func serveAvatars(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
