package matrix

import (
	"context"
	"errors"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// Download asks for authenticated media (spec v1.11,
// /_matrix/client/v1/media) first and falls back to the legacy
// /_matrix/media/v3 endpoint on servers that do not route the new one.
func (i intent) Download(ctx context.Context, uri id.ContentURI, header http.Header) (*http.Response, error) {
	client := i.ia.Client
	authed := client.BuildClientURL("v1", "media", "download", uri.Homeserver, uri.FileID)
	resp, err := getMedia(ctx, client, authed, header)
	if err == nil || !unroutedEndpoint(err) {
		return resp, err
	}
	legacy := client.BuildURL(mautrix.MediaURLPath{"v3", "download", uri.Homeserver, uri.FileID})
	return getMedia(ctx, client, legacy, header)
}

func getMedia(ctx context.Context, client *mautrix.Client, url string, header http.Header) (*http.Response, error) {
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
