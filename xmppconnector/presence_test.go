package xmppconnector

import (
	"fmt"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
)

// TestPresenceMapBounded: presence from any number of senders and resources
// tracks at most maxPresenceContacts contacts and maxPresenceResources
// resources each, and a contact whose resources all went offline is
// forgotten.
func TestPresenceMapBounded(t *testing.T) {
	a := &account{presence: make(map[string]map[string]string)}
	for i := range maxPresenceContacts + 500 {
		a.notePresence(fmt.Sprintf("stranger%d@example.org", i), "r", connector.PresenceOnline)
	}
	if n := len(a.presence); n > maxPresenceContacts {
		t.Errorf("%d contacts tracked, want at most %d", n, maxPresenceContacts)
	}
	for i := range maxPresenceResources * 4 {
		a.notePresence("stranger0@example.org", fmt.Sprint("res", i), connector.PresenceOnline)
	}
	if n := len(a.presence["stranger0@example.org"]); n > maxPresenceResources {
		t.Errorf("%d resources tracked, want at most %d", n, maxPresenceResources)
	}
	for i := range maxPresenceContacts {
		who := fmt.Sprintf("stranger%d@example.org", i)
		for r := range a.presence[who] {
			a.notePresence(who, r, connector.PresenceOffline)
		}
	}
	if n := len(a.presence); n != 0 {
		t.Errorf("%d contacts still tracked after all went offline", n)
	}
	// Room again for a newcomer.
	if state, changed := a.notePresence("new@example.org", "r", connector.PresenceOnline); state != connector.PresenceOnline || !changed {
		t.Errorf("newcomer: %s %v", state, changed)
	}
}
