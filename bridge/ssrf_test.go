package bridge_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestAttachmentLinksToInternalAddresses: anyone on the network can send a
// link that becomes an attachment. A link to loopback, and redirects from an
// allowed server to loopback and to the cloud metadata address, are refused
// before any connection: the internal server sees no request, the user sees
// a notice that does not repeat the address, and the chat goes on. The one
// server the operator allowed is fetched as before.
func TestAttachmentLinksToInternalAddresses(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		var internalHits atomic.Int32
		internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			internalHits.Add(1)
			_, _ = w.Write([]byte("internal secret"))
		}))
		t.Cleanup(internal.Close)
		internalAddr := internal.Listener.Addr().String()
		allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/ok.txt":
				_, _ = w.Write([]byte("public file"))
			case "/to-loopback":
				http.Redirect(w, r, internal.URL+"/secret", http.StatusFound)
			case "/to-metadata":
				http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
			default:
				http.NotFound(w, r)
			}
		}))
		t.Cleanup(allowed.Close)

		s := newFidelityStack(t, target, func(cfg *config.Config) {
			// Only the one server, by address and port.
			cfg.Bridge.MediaFetchAllow = []string{allowed.Listener.Addr().String()}
		})
		f := s.fidConnect(fakeSetup{})
		roomID, _ := s.fidPortal(f, "m1", "hi")

		links := []struct{ id, name, url string }{
			{"m2", "direct.txt", internal.URL + "/secret"},
			{"m3", "hop.txt", allowed.URL + "/to-loopback"},
			{"m4", "metadata.txt", allowed.URL + "/to-metadata"},
			{"m5", "ok.txt", allowed.URL + "/ok.txt"},
		}
		for _, l := range links {
			ev := fidFromBob(connector.KindMessage, l.id)
			ev.Text = "link " + l.id
			ev.Attachments = []connector.Attachment{{Name: l.name, MimeType: "text/plain", URL: l.url}}
			f.send(ev)
		}
		f.send(textFrom(fidBob, "m6", "still talking"))

		for _, name := range []string{"direct.txt", "hop.txt", "metadata.txt"} {
			notice := s.fidNotice(roomID, name, "not bridged")
			body := notice.Content.AsMessage().Body
			for _, leak := range []string{internalAddr, "127.0.0.1", "169.254", "localhost", "/secret", "meta-data"} {
				if strings.Contains(body, leak) {
					t.Errorf("notice %q repeats the address (%s)", body, leak)
				}
			}
		}
		file := s.fidRoomEvent(roomID, event.EventMessage, func(evt *event.Event) bool {
			msg := evt.Content.AsMessage()
			return msg != nil && msg.MsgType == event.MsgFile && msg.Body == "ok.txt"
		})
		if got := string(s.download(file.Content.AsMessage().URL)); got != "public file" {
			t.Errorf("allowed file: got %q", got)
		}
		for _, l := range links {
			s.waitMessage(roomID, "link "+l.id)
		}
		s.waitMessage(roomID, "still talking")
		if n := internalHits.Load(); n != 0 {
			t.Fatalf("the internal server got %d requests", n)
		}
	})
}
