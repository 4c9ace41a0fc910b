package connector

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// OpenAttachment returns the content of an attachment the bridge sent in a
// command: the inline data, or a stream from its url. The caller closes it.
//
// The bearer token goes only to the bridge's own listener (the host the
// client dials); a url anywhere else is fetched without it, so the token
// never leaks to a third party. A relative url is resolved against the
// bridge. httpClient nil means http.DefaultClient.
func (c *Client) OpenAttachment(ctx context.Context, httpClient *http.Client, a *Attachment) (io.ReadCloser, error) {
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
	if target.Host == bridge.Host {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
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
	u, err := url.Parse(c.url)
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
