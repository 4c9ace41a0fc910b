package connector

import (
	"errors"
	"fmt"
)

// ErrNotConnected is returned by Server.Command when the connector is not
// connected, or disconnects before answering. It is an *Error with
// Retryable set, so callers that retry on retryable errors need no special
// case; its code never appears on the wire.
var ErrNotConnected = &Error{Code: "M_NOT_CONNECTED", Message: "connector is not connected", Retryable: true}

// ErrReplaced is returned by Client.Run when the bridge closed the connection
// with 4001: another process said hello with the same connector id.
// Reconnecting would only start a tug of war between the two processes.
var ErrReplaced = errors.New("connection replaced by another connector with the same id")

// ErrEventTooLarge is wrapped by Client.Send's error for an event that does
// not fit into a frame. Like a ValidationError it is final: the same event
// is refused every time, so a connector must not retry it.
var ErrEventTooLarge = errors.New("event does not fit into a frame")

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

// asProtocolError turns any error into the *Error that goes on the wire.
// Unknown errors are not retryable: the handler may already have acted on
// the network, and a retry could then send a message twice.
func asProtocolError(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Code: ErrUnknown, Message: err.Error(), Retryable: false}
}
