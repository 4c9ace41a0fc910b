package xmppconnector

import (
	"database/sql"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// legacySchema is the SQL the connector ran on every start before its store
// had versioned upgrades (as of commit 73147d1): a store it made has these
// tables and no version table.
const legacySchema = `
CREATE TABLE IF NOT EXISTS seq (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	next INTEGER NOT NULL
);
INSERT OR IGNORE INTO seq (id, next) VALUES (1, 1);
CREATE TABLE IF NOT EXISTS outbox (
	seq   INTEGER PRIMARY KEY,
	event BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS txns (
	txn        TEXT PRIMARY KEY,
	result     BLOB,
	error      BLOB,
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
	login     TEXT PRIMARY KEY,
	stanza_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
	login     TEXT NOT NULL,
	stanza_id TEXT NOT NULL,
	at        INTEGER NOT NULL,
	PRIMARY KEY (login, stanza_id)
);
CREATE INDEX IF NOT EXISTS seen_at ON seen (at);
CREATE INDEX IF NOT EXISTS txns_created_at ON txns (created_at);
CREATE TABLE IF NOT EXISTS messages (
	login     TEXT NOT NULL,
	chat      TEXT NOT NULL,
	bridge_id TEXT NOT NULL,
	xmpp_id   TEXT NOT NULL,
	-- Bare JID of who sent it; '' for rows from before it was recorded.
	author    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (login, chat, bridge_id)
);
CREATE TABLE IF NOT EXISTS message_refs (
	login     TEXT NOT NULL,
	chat      TEXT NOT NULL,
	ref       TEXT NOT NULL,
	bridge_id TEXT NOT NULL,
	PRIMARY KEY (login, chat, ref)
);
CREATE TABLE IF NOT EXISTS reactions (
	login  TEXT NOT NULL,
	chat   TEXT NOT NULL,
	target TEXT NOT NULL,
	sender TEXT NOT NULL,
	key    TEXT NOT NULL,
	PRIMARY KEY (login, chat, target, sender, key)
);
CREATE TABLE IF NOT EXISTS contacts (
	login     TEXT NOT NULL,
	jid       TEXT NOT NULL,
	name      TEXT NOT NULL,
	avatar_id TEXT NOT NULL,
	PRIMARY KEY (login, jid)
);
CREATE TABLE IF NOT EXISTS avatars (
	sha1     TEXT PRIMARY KEY,
	mimetype TEXT NOT NULL,
	data     BLOB NOT NULL
);
`

// legacyAuthorLine is the column that stores made before commit 8c1c3f7
// lack; the old code added it on start.
const legacyAuthorLine = "\t-- Bare JID of who sent it; '' for rows from before it was recorded.\n\tauthor    TEXT NOT NULL DEFAULT '',\n"

// makeLegacyStore writes a store the way the unversioned code did, with a
// row in every table.
func makeLegacyStore(t *testing.T, path string, withAuthor bool) {
	t.Helper()
	schema := legacySchema
	if !withAuthor {
		schema = strings.Replace(schema, legacyAuthorLine, "", 1)
		if schema == legacySchema {
			t.Fatal("legacy schema has no author line to drop")
		}
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ev, err := json.Marshal(msgEvent("m1"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := json.Marshal(&connector.Result{ID: "$ok", TS: 5})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	stmts := []struct {
		q    string
		args []any
	}{
		{schema, nil},
		{`UPDATE seq SET next = 3 WHERE id = 1`, nil},
		{`INSERT INTO outbox (seq, event) VALUES (2, ?)`, []any{ev}},
		{`INSERT INTO txns (txn, result, created_at) VALUES ('$ok', ?, ?)`, []any{res, now}},
		{`INSERT INTO cursors (login, stanza_id) VALUES ('a@x', 'S9')`, nil},
		{`INSERT INTO seen (login, stanza_id, at) VALUES ('a@x', 'S8', ?)`, []any{now}},
		{`INSERT INTO messages (login, chat, bridge_id, xmpp_id) VALUES ('a@x', 'b@x', 'S8', 'bob-8')`, nil},
		{`INSERT INTO message_refs (login, chat, ref, bridge_id) VALUES ('a@x', 'b@x', 'bob-8', 'S8')`, nil},
		{`INSERT INTO reactions (login, chat, target, sender, key) VALUES ('a@x', 'b@x', 'S8', 'b@x', '👍')`, nil},
		{`INSERT INTO contacts (login, jid, name, avatar_id) VALUES ('a@x', 'b@x', 'Bob', 'abc')`, nil},
		{`INSERT INTO avatars (sha1, mimetype, data) VALUES ('abc', 'image/png', X'89504e47')`, nil},
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(t.Context(), s.q, s.args...); err != nil {
			t.Fatalf("%s: %v", s.q, err)
		}
	}
}

// latestStoreVersion is the version of upgrades/00-latest.sql.
const latestStoreVersion = 2

func storeVersion(t *testing.T, s *Store) int {
	t.Helper()
	var v int
	if err := s.db.QueryRowContext(t.Context(), `SELECT version FROM version`).Scan(&v); err != nil {
		t.Fatalf("reading the schema version: %v", err)
	}
	return v
}

// storeSchema describes every table's columns and every index, to compare
// an adopted store with a new one.
func storeSchema(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.db.QueryContext(t.Context(), `
		SELECT m.type || ' ' || m.name || ' ' || COALESCE(p.name, '') || ' ' || COALESCE(p.type, '') || ' ' ||
			COALESCE(p."notnull", '') || ' ' || COALESCE(p.dflt_value, '') || ' ' || COALESCE(p.pk, '')
		FROM sqlite_master m LEFT JOIN pragma_table_info(m.name) p ON m.type = 'table'
		WHERE m.name NOT LIKE 'sqlite_%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		out = append(out, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStoreAdoptsUnversionedStore: a store written by the connector before
// its schema had versions (with and without messages.author) is adopted as
// v1 and upgraded to the latest version, with every row kept and the same
// schema as a new store.
func TestStoreAdoptsUnversionedStore(t *testing.T) {
	fresh := openTestStore(t, filepath.Join(t.TempDir(), "fresh.db"))
	if v := storeVersion(t, fresh); v != latestStoreVersion {
		t.Fatalf("new store is v%d, want v%d", v, latestStoreVersion)
	}
	want := storeSchema(t, fresh)
	for _, withAuthor := range []bool{true, false} {
		name := "with author"
		if !withAuthor {
			name = "before author"
		}
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "old.db")
			makeLegacyStore(t, path, withAuthor)
			s := openTestStore(t, path)
			if v := storeVersion(t, s); v != latestStoreVersion {
				t.Fatalf("adopted store is v%d, want v%d", v, latestStoreVersion)
			}
			if got := storeSchema(t, s); !slices.Equal(got, want) {
				t.Fatalf("adopted schema differs from a new store's:\n got %q\nwant %q", got, want)
			}
			if next, err := s.NextSeq(ctx); err != nil || next != 3 {
				t.Errorf("NextSeq = %d, %v; want 3", next, err)
			}
			if evs, err := s.Unacked(ctx, 0, 0); err != nil || len(evs) != 1 || evs[0].Seq != 2 || evs[0].Event.ID != "m1" {
				t.Errorf("Unacked = %+v, %v", evs, err)
			}
			if res, _, found, err := s.TxnResult(ctx, "$ok"); err != nil || !found || res.ID != "$ok" {
				t.Errorf("TxnResult = %+v, %v, %v", res, found, err)
			}
			if c, err := s.Cursor(ctx, "a@x"); err != nil || c != "S9" {
				t.Errorf("Cursor = %q, %v", c, err)
			}
			if seen, err := s.Seen(ctx, "a@x", "S8"); err != nil || !seen {
				t.Errorf("Seen = %v, %v", seen, err)
			}
			if id, ok, err := s.BridgeID(ctx, "a@x", "b@x", "bob-8"); err != nil || !ok || id != "S8" {
				t.Errorf("BridgeID = %q, %v, %v", id, ok, err)
			}
			if author, ok, err := s.Author(ctx, "a@x", "b@x", "S8"); err != nil || !ok || author != "" {
				t.Errorf("Author = %q, %v, %v; want the unknown author of an old row", author, ok, err)
			}
			if keys, err := s.Reactions(ctx, "a@x", "b@x", "S8", "b@x"); err != nil || !slices.Equal(keys, []string{"👍"}) {
				t.Errorf("Reactions = %v, %v", keys, err)
			}
			if c, ok, err := s.Contact(ctx, "a@x", "b@x"); err != nil || !ok || c.Name != "Bob" || c.AvatarID != "abc" {
				t.Errorf("Contact = %+v, %v, %v", c, ok, err)
			}
			if mt, data, ok, err := s.Avatar(ctx, "abc"); err != nil || !ok || mt != "image/png" || len(data) != 4 {
				t.Errorf("Avatar = %q, %d bytes, %v, %v", mt, len(data), ok, err)
			}
			// What the store does next still works: a message with its
			// author, a new event continuing the seq.
			if err := s.Apply(ctx, &effects{login: "a@x", refs: []msgRef{{chat: "b@x", bridgeID: "new", xmppID: "new", author: "b@x"}}}); err != nil {
				t.Fatal(err)
			}
			if author, ok, err := s.Author(ctx, "a@x", "b@x", "new"); err != nil || !ok || author != "b@x" {
				t.Errorf("Author of a new row = %q, %v, %v", author, ok, err)
			}
			if err := s.Append(ctx, 3, msgEvent("m2")); err != nil {
				t.Fatalf("Append after adoption: %v", err)
			}
			_ = s.Close()
			again := openTestStore(t, path)
			if v := storeVersion(t, again); v != latestStoreVersion {
				t.Fatalf("reopened store is v%d, want v%d", v, latestStoreVersion)
			}
			if next, err := again.NextSeq(ctx); err != nil || next != 4 {
				t.Errorf("NextSeq after reopening = %d, %v; want 4", next, err)
			}
		})
	}
}
