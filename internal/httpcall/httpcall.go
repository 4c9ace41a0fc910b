// Package httpcall makes, for tests, the HTTP requests a homeserver or a
// connector makes of the bridge's token-guarded endpoints, and reads the
// answer whole. It is for tests only: no production package imports it.
package httpcall

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Do sends a request to url with body (an empty one is no body) and,
// unless token is empty, the token as a bearer token; it returns the
// status code and the answer's body. A request that gets no answer fails
// the test: every caller asserts on the status.
func Do(t testing.TB, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}
