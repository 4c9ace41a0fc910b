package conformance

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dmbridge/dmbridge/connector"
)

// validateHello checks hello data. It returns nil for a hello the suite
// cannot work with at all, and lists every problem it finds.
func validateHello(data json.RawMessage, wantLogin string) (*connector.Hello, []string) {
	var h connector.Hello
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, []string{fmt.Sprintf("hello data does not decode: %v", err)}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	hasV1 := false
	for _, v := range h.Protocol {
		hasV1 = hasV1 || v == connector.ProtocolVersion
	}
	if !hasV1 {
		bad("protocol %v does not contain %d", h.Protocol, connector.ProtocolVersion)
	}
	if h.Connector.ID == "" {
		bad("connector.id is missing")
	}
	if h.Network.ID == "" {
		bad("network.id is missing")
	}
	ids := make(map[string]bool)
	for i, l := range h.Logins {
		switch {
		case l.ID == "":
			bad("logins[%d].id is missing", i)
		case ids[l.ID]:
			bad("logins[%d].id %q is listed twice", i, l.ID)
		}
		ids[l.ID] = true
		if !isMatrixUser(l.MatrixUser) {
			bad("logins[%d] (%s): matrix_user %q is not a Matrix user id", i, l.ID, l.MatrixUser)
		}
		switch l.State {
		case "", connector.LoginConnected, connector.LoginDisconnected, connector.LoginBadCredentials:
		default:
			bad("logins[%d] (%s): state %q is not a login state", i, l.ID, l.State)
		}
	}
	switch {
	case wantLogin != "" && !ids[wantLogin]:
		bad("the target's login %q is not among the logins of hello", wantLogin)
	case len(h.Logins) == 0:
		bad("hello announces no logins; the suite needs one to send commands to")
	}
	if !hasV1 || h.Connector.ID == "" {
		return nil, problems
	}
	return &h, problems
}

// isMatrixUser checks the shape @localpart:server.
func isMatrixUser(s string) bool {
	local, server, ok := strings.Cut(strings.TrimPrefix(s, "@"), ":")
	return ok && strings.HasPrefix(s, "@") && local != "" && server != ""
}
