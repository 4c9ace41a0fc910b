package portal

import (
	"context"
	"errors"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// downloadMedia opens a stream of Matrix media as the bridge bot. It asks
// for authenticated media (spec v1.11, /_matrix/client/v1/media) first and
// falls back to the legacy /_matrix/media/v3 endpoint on servers that do not
// route the new one. The caller closes the body.
func (m *Manager) downloadMedia(ctx context.Context, uri id.ContentURI, header http.Header) (*http.Response, error) {
	client := m.link.Bot().Client
	authed := client.BuildClientURL("v1", "media", "download", uri.Homeserver, uri.FileID)
	resp, err := m.getMedia(ctx, client, authed, header)
	if err == nil || !unroutedEndpoint(err) {
		return resp, err
	}
	legacy := client.BuildURL(mautrix.MediaURLPath{"v3", "download", uri.Homeserver, uri.FileID})
	return m.getMedia(ctx, client, legacy, header)
}

func (m *Manager) getMedia(ctx context.Context, client *mautrix.Client, url string, header http.Header) (*http.Response, error) {
	_, resp, err := client.MakeFullRequestWithResp(ctx, mautrix.FullRequest{
		Method:           http.MethodGet,
		URL:              url,
		Headers:          header.Clone(), // the client adds its token to this map
		DontReadResponse: true,
		// A failed download is the caller's to retry, with its own backoff.
		MaxAttempts: 1,
	})
	return resp, err
}

// unroutedEndpoint tells "this server has no such endpoint" apart from "no
// such media": only the former is worth the legacy fallback.
func unroutedEndpoint(err error) bool {
	if errors.Is(err, mautrix.MUnrecognized) {
		return true
	}
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) && httpErr.RespError == nil && httpErr.Response != nil {
		code := httpErr.Response.StatusCode
		return code == http.StatusNotFound || code == http.StatusMethodNotAllowed
	}
	return false
}
