package xmppconnector

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

func openTestStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := OpenStore(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func msgEvent(id string) *connector.Event {
	return &connector.Event{
		Kind: connector.KindMessage, Login: "a@x", ID: id, Text: id,
		Chat:   &connector.Chat{ID: "b@x", Type: connector.ChatTypeDM, With: "b@x"},
		Sender: &connector.Sender{ID: "b@x"},
	}
}

func TestStoreOutboxContract(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "c.db")
	s := openTestStore(t, path)
	mustSeq := func(want int64) {
		t.Helper()
		if got, err := s.NextSeq(ctx); err != nil || got != want {
			t.Fatalf("NextSeq = %d, %v; want %d", got, err, want)
		}
	}
	mustSeq(1)
	for i, id := range []string{"m1", "m2", "m3"} {
		if err := s.Append(ctx, int64(i+1), msgEvent(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(ctx, 7, msgEvent("gap")); err == nil {
		t.Fatal("Append accepted a seq that skips ahead")
	}
	mustSeq(4)
	if err := s.Acked(ctx, 1); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Unacked(ctx, 1, 0)
	if err != nil || len(evs) != 2 || evs[0].Seq != 2 || evs[0].Event.ID != "m2" || evs[1].Event.Chat.ID != "b@x" {
		t.Fatalf("Unacked = %+v, %v", evs, err)
	}
	// A page: the SDK reads its backlog a window at a time.
	if evs, err := s.Unacked(ctx, 1, 1); err != nil || len(evs) != 1 || evs[0].Seq != 2 {
		t.Fatalf("Unacked with limit 1 = %+v, %v", evs, err)
	}
	// A bridge that acked more than this store ever held (a reset store):
	// new seqs continue after the ack.
	if err := s.Acked(ctx, 40); err != nil {
		t.Fatal(err)
	}
	mustSeq(41)
	_ = s.Close()
	s = openTestStore(t, path)
	mustSeq(41)
}

func TestStoreTxnOutcomes(t *testing.T) {
	ctx := t.Context()
	s := openTestStore(t, filepath.Join(t.TempDir(), "c.db"))
	if _, _, found, err := s.TxnResult(ctx, "$t"); found || err != nil {
		t.Fatalf("unknown txn found=%v err=%v", found, err)
	}
	if err := s.SaveTxnResult(ctx, "$ok", &connector.Result{ID: "$ok", TS: 5}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveTxnResult(ctx, "$bad", nil, &connector.Error{Code: connector.ErrUnsupported, Message: "no"}); err != nil {
		t.Fatal(err)
	}
	res, perr, found, err := s.TxnResult(ctx, "$ok")
	if err != nil || !found || perr != nil || res.ID != "$ok" || res.TS != 5 {
		t.Errorf("$ok = %+v %+v %v %v", res, perr, found, err)
	}
	res, perr, found, err = s.TxnResult(ctx, "$bad")
	if err != nil || !found || res != nil || perr.Code != connector.ErrUnsupported {
		t.Errorf("$bad = %+v %+v %v %v", res, perr, found, err)
	}
}

// The archive bookkeeping of an event commits with it or not at all.
func TestStoreEffectsCommitWithEvent(t *testing.T) {
	ctx := t.Context()
	s := openTestStore(t, filepath.Join(t.TempDir(), "c.db"))
	eff := &effects{login: "a@x", stanzaID: "S1", refs: []msgRef{{chat: "b@x", bridgeID: "S1", xmppID: "bob-1", aliases: []string{"origin-1"}}}}
	if err := s.Append(withEffects(ctx, eff), 5, msgEvent("S1")); err == nil {
		t.Fatal("Append with a wrong seq succeeded")
	}
	if seen, _ := s.Seen(ctx, "a@x", "S1"); seen {
		t.Fatal("a failed Append marked its archive item seen")
	}
	if err := s.Append(withEffects(ctx, eff), 1, msgEvent("S1")); err != nil {
		t.Fatal(err)
	}
	if seen, err := s.Seen(ctx, "a@x", "S1"); !seen || err != nil {
		t.Errorf("seen = %v, %v", seen, err)
	}
	if c, err := s.Cursor(ctx, "a@x"); c != "S1" || err != nil {
		t.Errorf("cursor = %q, %v", c, err)
	}
	for _, ref := range []string{"bob-1", "origin-1", "S1"} {
		if id, ok, err := s.BridgeID(ctx, "a@x", "b@x", ref); id != "S1" || !ok || err != nil {
			t.Errorf("BridgeID(%s) = %q %v %v", ref, id, ok, err)
		}
	}
	if x, err := s.XMPPID(ctx, "a@x", "b@x", "S1"); x != "bob-1" || err != nil {
		t.Errorf("XMPPID = %q, %v", x, err)
	}
	if x, _ := s.XMPPID(ctx, "a@x", "b@x", "unknown"); x != "unknown" {
		t.Errorf("XMPPID of an unknown id = %q, want it passed through", x)
	}
	if err := s.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	if seen, _ := s.Seen(ctx, "a@x", "S1"); !seen {
		t.Error("Prune forgot a fresh archive id")
	}
}

// TestStoreFileIsPrivate: a new store and its WAL are readable by their
// owner only, whatever the umask allows.
func TestStoreFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := OpenStore(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetCursor(t.Context(), "acct", "c1"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), st.Mode().Perm())
		}
	}
}

// TestStoreDropsReplacedAvatars: a picture goes when the last contact
// showing it changes to another; one another contact still shows stays.
func TestStoreDropsReplacedAvatars(t *testing.T) {
	ctx := t.Context()
	s := openTestStore(t, filepath.Join(t.TempDir(), "c.db"))
	for _, sha := range []string{"a1", "a2", "a3"} {
		if err := s.PutAvatar(ctx, sha, "image/png", []byte(sha)); err != nil {
			t.Fatal(err)
		}
	}
	put := func(jid, avatar string) {
		t.Helper()
		if err := s.PutContact(ctx, "a@x", jid, storedContact{Name: jid, AvatarID: avatar}); err != nil {
			t.Fatal(err)
		}
	}
	put("bob@x", "a1")
	put("carol@x", "a2")
	put("dave@x", "a2")
	put("bob@x", "a2")   // a1: nobody shows it
	put("carol@x", "a3") // a2: dave and bob still do
	put("bob@x", "a2")   // unchanged
	for sha, want := range map[string]bool{"a1": false, "a2": true, "a3": true} {
		if _, _, ok, err := s.Avatar(ctx, sha); err != nil || ok != want {
			t.Errorf("avatar %s stored: %v (%v), want %v", sha, ok, err, want)
		}
	}
}

// TestPruneKeepsWhatTheCursorHasNotPassed: old archive ids behind the
// cursor go; those at or after it stay whatever their age (a live message
// marked seen, the cursor not moved over it yet), and a cursor whose item
// was never seen passes nothing.
func TestPruneKeepsWhatTheCursorHasNotPassed(t *testing.T) {
	ctx := t.Context()
	s := openTestStore(t, filepath.Join(t.TempDir(), "c.db"))
	old := time.Now().Add(-keepFor - time.Hour).UnixMilli()
	for _, row := range []struct {
		login, id string
		at        int64
	}{{"a@x", "A1", old - 2}, {"a@x", "A2", old - 1}, {"a@x", "A3", old}, {"b@x", "B1", old - 1}} {
		if _, err := s.db.ExecContext(ctx, `INSERT INTO seen (login, stanza_id, at) VALUES (?, ?, ?)`, row.login, row.id, row.at); err != nil {
			t.Fatal(err)
		}
	}
	for login, cursor := range map[string]string{"a@x": "A2", "b@x": "never-seen"} {
		if err := s.SetCursor(ctx, login, cursor); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		login, id string
		kept      bool
	}{{"a@x", "A1", false}, {"a@x", "A2", true}, {"a@x", "A3", true}, {"b@x", "B1", true}} {
		if seen, err := s.Seen(ctx, c.login, c.id); err != nil || seen != c.kept {
			t.Errorf("%s %s kept = %v (%v), want %v", c.login, c.id, seen, err, c.kept)
		}
	}
}
