package database

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lib/pq"
)

// TestOnlyARefusalSwitchesTheFlush: Flush gives up the logical message for
// good only when the server refuses that function; a server shutting down
// (as after a crash), a cancelled statement or a lost connection does not.
func TestOnlyARefusalSwitchesTheFlush(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pq.Error{Code: "42501"}, true},
		{fmt.Errorf("exec: %w", &pq.Error{Code: "42883"}), true},
		{&pq.Error{Code: "57P01"}, false},
		{&pq.Error{Code: "57014"}, false},
		{errors.New("driver: bad connection"), false},
		{nil, false},
	} {
		if got := refusesMessage(c.err); got != c.want {
			t.Errorf("refusesMessage(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
