package puppet

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

func raw(t *testing.T, v map[string]any) map[string]json.RawMessage {
	t.Helper()
	out := map[string]json.RawMessage{}
	for k, val := range v {
		data, err := json.Marshal(val)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = data
	}
	return out
}

func TestMergeDirect(t *testing.T) {
	ghost := id.UserID("@dm_bob:x")
	cases := []struct {
		name    string
		current map[string]any
		change  DirectChange
		want    map[string]any
		changed bool
	}{
		{
			name:    "adds under the ghost and keeps the rest",
			current: map[string]any{"@carol:x": []string{"!c:x"}},
			change:  DirectChange{Add: map[id.UserID][]id.RoomID{ghost: {"!p:x"}}},
			want:    map[string]any{"@carol:x": []string{"!c:x"}, "@dm_bob:x": []string{"!p:x"}},
			changed: true,
		},
		{
			name:    "appends to the ghost's other rooms",
			current: map[string]any{"@dm_bob:x": []string{"!old:x"}},
			change:  DirectChange{Add: map[id.UserID][]id.RoomID{ghost: {"!p:x"}}},
			want:    map[string]any{"@dm_bob:x": []string{"!old:x", "!p:x"}},
			changed: true,
		},
		{
			name:    "already there is no change",
			current: map[string]any{"@dm_bob:x": []string{"!p:x"}},
			change:  DirectChange{Add: map[id.UserID][]id.RoomID{ghost: {"!p:x"}}},
			want:    map[string]any{"@dm_bob:x": []string{"!p:x"}},
		},
		{
			name:    "removes only cleaned rooms, wherever listed",
			current: map[string]any{"@dm_bob:x": []string{"!gone:x", "!p:x"}, "@carol:x": []string{"!gone:x", "!c:x"}},
			change:  DirectChange{Remove: map[id.RoomID]bool{"!gone:x": true}},
			want:    map[string]any{"@dm_bob:x": []string{"!p:x"}, "@carol:x": []string{"!c:x"}},
			changed: true,
		},
		{
			name:    "a key left empty goes away",
			current: map[string]any{"@dm_bob:x": []string{"!gone:x"}},
			change:  DirectChange{Remove: map[id.RoomID]bool{"!gone:x": true}},
			want:    map[string]any{},
			changed: true,
		},
		{
			name:    "values that are not room lists are left alone",
			current: map[string]any{"weird": map[string]any{"a": 1}, "@dm_bob:x": "nonsense"},
			change:  DirectChange{Add: map[id.UserID][]id.RoomID{ghost: {"!p:x"}}, Remove: map[id.RoomID]bool{"!c:x": true}},
			want:    map[string]any{"weird": map[string]any{"a": 1}, "@dm_bob:x": "nonsense"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			merged, changed := mergeDirect(raw(t, tc.current), tc.change)
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			got, _ := json.Marshal(merged)
			want, _ := json.Marshal(raw(t, tc.want))
			if string(got) != string(want) {
				t.Errorf("merged = %s, want %s", got, want)
			}
		})
	}
}

// directServer is account data storage that a "client" overwrites right
// after the bridge's first write, dropping the bridge's entry.
type directServer struct {
	mu      sync.Mutex
	content string
	puts    int
	clobber bool
}

func (d *directServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !strings.HasSuffix(r.URL.Path, "/account_data/m.direct") {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet:
		if d.content == "" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errcode":"M_NOT_FOUND","error":"no m.direct"}`)
			return
		}
		_, _ = io.WriteString(w, d.content)
	case http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		d.puts++
		d.content = string(body)
		if d.clobber && d.puts == 1 {
			d.content = `{"@carol:x":["!c:x"],"@dave:x":["!d:x"]}`
		}
		_, _ = io.WriteString(w, `{}`)
	}
}

// clientData is AccountData on a plain mautrix client.
type clientData struct{ *mautrix.Client }

func (c clientData) UserID() id.UserID { return c.Client.UserID }

// aliceOn is alice's client on a homeserver served by srv for the test.
func aliceOn(t *testing.T, srv http.Handler) clientData {
	t.Helper()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	client, err := mautrix.NewClient(hs.URL, "@alice:x", "token")
	if err != nil {
		t.Fatal(err)
	}
	return clientData{client}
}

func TestDirectApplyRedoesMergeAfterConcurrentWrite(t *testing.T) {
	srv := &directServer{content: `{"@carol:x":["!c:x"]}`, clobber: true}
	client := aliceOn(t, srv)
	d := NewDirect(zerolog.Nop())
	wrote, err := d.Apply(context.Background(), client, DirectChange{Add: map[id.UserID][]id.RoomID{"@dm_bob:x": {"!p:x"}}})
	if err != nil || !wrote {
		t.Fatalf("Apply = %v, %v", wrote, err)
	}
	var got map[string][]string
	_ = json.Unmarshal([]byte(srv.content), &got)
	if len(got["@dm_bob:x"]) != 1 || len(got["@dave:x"]) != 1 || len(got["@carol:x"]) != 1 {
		t.Errorf("final m.direct = %s, want the bridge's entry and both clients' entries", srv.content)
	}
	if srv.puts != 2 {
		t.Errorf("%d writes, want 2 (one clobbered, one redone)", srv.puts)
	}

	// Nothing to change: no write at all.
	before := srv.puts
	if wrote, err = d.Apply(context.Background(), client, DirectChange{Add: map[id.UserID][]id.RoomID{"@dm_bob:x": {"!p:x"}}}); err != nil || wrote {
		t.Fatalf("Apply with nothing to do = %v, %v", wrote, err)
	}
	if srv.puts != before {
		t.Errorf("a no-op merge wrote m.direct")
	}
}
