package puppet

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

// parseChange reads a DirectChange from the fuzzer's compact spelling:
// add is "ghost=!r1,!r2;ghost2=!r3", remove is "!r1,!r4".
func parseChange(add, remove string) DirectChange {
	change := DirectChange{Add: map[id.UserID][]id.RoomID{}, Remove: map[id.RoomID]bool{}}
	for _, part := range strings.Split(add, ";") {
		ghost, rooms, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		for _, r := range strings.Split(rooms, ",") {
			change.Add[id.UserID(ghost)] = append(change.Add[id.UserID(ghost)], id.RoomID(r))
		}
	}
	if remove != "" {
		for _, r := range strings.Split(remove, ",") {
			change.Remove[id.RoomID(r)] = true
		}
	}
	return change
}

// FuzzMergeDirect checks the m.direct merge against what it promises the
// user: no key and no room the change does not name is dropped or altered;
// every room the change adds (and does not also remove) is listed under its
// ghost unless that key holds something that is not a room list; no removed
// room remains in a list the merge edited; merging again changes nothing;
// and "changed" is true exactly when the result differs.
func FuzzMergeDirect(f *testing.F) {
	f.Add([]byte(`{"@bob:hs":["!a:hs"],"@carol:hs":["!c:hs","!d:hs"]}`), "@ghost:hs=!p:hs", "")
	f.Add([]byte(`{"@ghost:hs":["!p:hs"]}`), "@ghost:hs=!p:hs", "")
	f.Add([]byte(`{"@ghost:hs":["!old:hs","!keep:hs"],"@x:hs":["!old:hs"]}`), "", "!old:hs")
	f.Add([]byte(`{"@ghost:hs":"not a list","@y:hs":{"a":1},"@z:hs":null,"@w:hs":[]}`), "@ghost:hs=!p:hs;@z:hs=!q:hs;@w:hs=!w:hs", "!q:hs")
	f.Add([]byte(`{"@ghost:hs":["!a:hs",5]}`), "@ghost:hs=!b:hs", "!a:hs")
	f.Add([]byte(`{"@ghost:hs":["!a:hs","!a:hs"]}`), "@ghost:hs=!a:hs,!a:hs,!b:hs", "")
	f.Add([]byte(`{}`), "@g:hs=!r:hs", "!r:hs")
	f.Add([]byte(`{"@g:hs":[ "!r:hs" ]}`), "@g:hs=", ",")
	f.Fuzz(func(t *testing.T, currentJSON []byte, add, remove string) {
		var current map[string]json.RawMessage
		// Room and user ids come from JSON, so they are valid UTF-8.
		if json.Unmarshal(currentJSON, &current) != nil || current == nil || !utf8.ValidString(add) || !utf8.ValidString(remove) {
			return
		}
		change := parseChange(add, remove)
		snapshot := cloneRaw(current)
		merged, changed := mergeDirect(current, change)
		if !rawEqual(current, snapshot) {
			t.Fatal("mergeDirect modified its input")
		}
		checkMerge(t, current, merged, change)
		if changed == rawEqual(current, merged) {
			t.Fatalf("changed=%v but result equal=%v", changed, rawEqual(current, merged))
		}
		again, changedAgain := mergeDirect(merged, change)
		if changedAgain || !rawEqual(again, merged) {
			t.Fatalf("merge is not idempotent:\n%s\n%s", dump(merged), dump(again))
		}
	})
}

func checkMerge(t *testing.T, current, merged map[string]json.RawMessage, change DirectChange) {
	t.Helper()
	for key, raw := range current {
		var rooms []id.RoomID
		isList := json.Unmarshal(raw, &rooms) == nil
		_, named := change.Add[id.UserID(key)]
		touched := named || slices.ContainsFunc(rooms, func(r id.RoomID) bool { return change.Remove[r] })
		got, present := merged[key]
		if !isList || !touched {
			if !present || !bytes.Equal(got, raw) {
				t.Fatalf("key %q not named by the change went from %s to %s (present %v)", key, raw, got, present)
			}
			continue
		}
		var after []id.RoomID
		if present && json.Unmarshal(got, &after) != nil {
			t.Fatalf("key %q is no longer a room list: %s", key, got)
		}
		for _, r := range rooms {
			if !change.Remove[r] && !slices.Contains(after, r) {
				t.Fatalf("room %s under %q was dropped without being removed", r, key)
			}
		}
		for _, r := range after {
			if change.Remove[r] {
				t.Fatalf("removed room %s still under %q", r, key)
			}
			if !slices.Contains(rooms, r) && !slices.Contains(change.Add[id.UserID(key)], r) {
				t.Fatalf("room %s under %q came from nowhere", r, key)
			}
		}
	}
	for key := range merged {
		if _, was := current[key]; !was {
			if _, named := change.Add[id.UserID(key)]; !named {
				t.Fatalf("key %q appeared without being added", key)
			}
		}
	}
	for ghost, rooms := range change.Add {
		raw, present := current[string(ghost)]
		var have []id.RoomID
		if present && json.Unmarshal(raw, &have) != nil {
			continue // not a room list: left alone, checked above
		}
		var after []id.RoomID
		_ = json.Unmarshal(merged[string(ghost)], &after)
		for _, r := range rooms {
			if !change.Remove[r] && !slices.Contains(after, r) {
				t.Fatalf("added room %s missing under %s: %s", r, ghost, merged[string(ghost)])
			}
		}
	}
}

func cloneRaw(m map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = bytes.Clone(v)
	}
	return out
}

func rawEqual(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

func dump(m map[string]json.RawMessage) string {
	b, _ := json.Marshal(m)
	return string(b)
}
