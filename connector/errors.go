package connector

import (
	"fmt"
)

// ErrTooLarge is the code the SDK answers a command with when its result
// does not fit into one frame. Not in the spec's list, which is open.
const ErrTooLarge = "M_TOO_LARGE"

// ValidationError says which field of an event or ephemeral is missing or wrong.
type ValidationError struct {
	// Kind is the event or ephemeral kind ("" if the kind itself is missing).
	Kind string
	// Field is the JSON path of the offending field, e.g. "chat.id" or "attachments[1].data".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Kind == "" {
		return fmt.Sprintf("invalid data: %s %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("invalid %s: %s %s", e.Kind, e.Field, e.Reason)
}
