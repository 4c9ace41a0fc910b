package server

import (
	"github.com/dmbridge/dmbridge/connector"
)

// ErrNotConnected is returned by Server.Command when the connector is not
// connected, or disconnects before answering. It is an *Error with
// Retryable set, so callers that retry on retryable errors need no special
// case; its code never appears on the wire.
var ErrNotConnected = &connector.Error{Code: "M_NOT_CONNECTED", Message: "connector is not connected", Retryable: true}
