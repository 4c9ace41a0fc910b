package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/dmbridge/dmbridge/connector"
)

// OpenAttachment returns the content of an attachment the bridge sent in a
// command: the inline data, or a stream from its url. The caller closes it.
//
// The bearer token goes only to the exact origin (scheme, host and port) of
// the bridge the client dials, and is not carried along a redirect to
// another origin; a url anywhere else, an http:// one of a wss:// bridge
// included, is fetched without it, so the token never leaks to a third
// party or travels unencrypted. A relative url is resolved against the
// bridge. httpClient nil means http.DefaultClient.
func (c *Client) OpenAttachment(ctx context.Context, httpClient *http.Client, a *connector.Attachment) (io.ReadCloser, error) {
	if a.URL == "" {
		return io.NopCloser(bytes.NewReader(a.Data)), nil
	}
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	bridge, err := c.bridgeHTTPURL()
	if err != nil {
		return nil, err
	}
	target, err := bridge.Parse(a.URL)
	if err != nil {
		return nil, fmt.Errorf("attachment url: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("attachment url: %w", err)
	}
	if sameOrigin(target, bridge) {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
		httpClient = keepTokenAtOrigin(httpClient, bridge)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch attachment %q: %w", a.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("fetch attachment %q: HTTP %d", a.Name, resp.StatusCode)
	}
	return resp.Body, nil
}

// bridgeHTTPURL is the bridge's listener as an http(s) URL.
func (c *Client) bridgeHTTPURL() (*url.URL, error) {
	if c.urlErr != nil {
		return nil, c.urlErr
	}
	u, err := url.Parse(c.url())
	if err != nil {
		return nil, err
	}
	if u.Scheme == "wss" {
		u.Scheme = "https"
	} else {
		u.Scheme = "http"
	}
	return u, nil
}

// sameOrigin compares scheme, host and port, with the scheme's default port
// filled in.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) &&
		portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// keepTokenAtOrigin returns a copy of hc that drops the Authorization header
// on a redirect leaving origin (the standard client keeps it for the same
// host on another port or scheme).
func keepTokenAtOrigin(hc *http.Client, origin *url.URL) *http.Client {
	c := *hc
	next := hc.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !sameOrigin(req.URL, origin) {
			req.Header.Del("Authorization")
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}
