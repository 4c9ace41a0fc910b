package sdk

import (
	"errors"

	"github.com/dmbridge/dmbridge/connector"
)

// ErrReplaced is returned by Client.Run when the bridge closed the connection
// with 4001: another process said hello with the same connector id.
// Reconnecting would only start a tug of war between the two processes.
var ErrReplaced = errors.New("connection replaced by another connector with the same id")

// ErrEventTooLarge is wrapped by Client.Send's error for an event that does
// not fit into a frame. Like a ValidationError it is final: the same event
// is refused every time, so a connector must not retry it.
var ErrEventTooLarge = errors.New("event does not fit into a frame")

// asProtocolError turns any error into the *Error that goes on the wire.
// Unknown errors are not retryable: the handler may already have acted on
// the network, and a retry could then send a message twice.
func asProtocolError(err error) *connector.Error {
	var pe *connector.Error
	if errors.As(err, &pe) {
		return pe
	}
	return &connector.Error{Code: connector.ErrUnknown, Message: err.Error(), Retryable: false}
}
