package fence

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestHeldResponseKeepsNetHTTPFraming: with the gate open, a held response
// is framed as net/http frames it unfenced. A HEAD answer whose handler
// wrote no body (the media handler's, when the homeserver sent no length)
// must not claim Content-Length: 0, which would tell the client the GET body
// is empty; declared trailers must still reach the client.
func TestHeldResponseKeepsNetHTTPFraming(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/head", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, "png bytes")
		}
	})
	mux.HandleFunc("/trailer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
	})
	_, gate := switchableGate()
	for name, h := range map[string]http.Handler{"unfenced": mux, "fenced": Handler(mux, gate, nil)} {
		srv := httptest.NewServer(h)
		resp, err := http.Head(srv.URL + "/head")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if cl := resp.Header.Values("Content-Length"); len(cl) != 0 {
			t.Errorf("%s: HEAD answered Content-Length %q for a handler that gave none", name, cl)
		}
		resp, err = http.Get(srv.URL + "/trailer")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if got := resp.Trailer.Get("X-Sum"); got != "42" {
			t.Errorf("%s: trailer X-Sum = %q, want 42", name, got)
		}
		srv.Close()
	}
}
