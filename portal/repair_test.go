package portal

import (
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/puppet"
)

func TestDirectDiff(t *testing.T) {
	current := map[string][]id.RoomID{
		"@dm_bob:hs":  {"!bob:hs"},
		"@dm_old:hs":  {"!cleaned:hs", "!keep:hs"},
		"@friend:hs":  {"!mine:hs"},
		"@dm_eve:hs":  {},
		"@elsewhere":  {"!cleaned:hs"},
		"@dm_carl:hs": {"!carl:hs"},
	}
	change := puppet.DirectChange{
		Add: map[id.UserID][]id.RoomID{
			"@dm_bob:hs":  {"!bob:hs"},
			"@dm_carl:hs": {"!carl2:hs"},
			"@dm_dan:hs":  {"!dan:hs", "!cleaned:hs"},
		},
		Remove: map[id.RoomID]bool{"!cleaned:hs": true},
	}
	added, removed := directDiff(current, change)
	if want := []string{"@dm_carl:hs !carl2:hs", "@dm_dan:hs !dan:hs"}; !slices.Equal(added, want) {
		t.Errorf("added = %q, want %q", added, want)
	}
	if want := []string{"@dm_old:hs !cleaned:hs", "@elsewhere !cleaned:hs"}; !slices.Equal(removed, want) {
		t.Errorf("removed = %q, want %q", removed, want)
	}
}
