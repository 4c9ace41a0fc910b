package main

import (
	"fmt"

	"github.com/dmbridge/dmbridge/internal/devstack"
)

// ports are the loopback ports of the stack.
type ports struct {
	dendrite   int
	appservice int
	connector  int
	prosody    int
}

// The ports the demo prefers: Matrix's and XMPP's usual ones, and the
// bridge's defaults from the example config.
var wellKnown = ports{dendrite: 8008, appservice: 29333, connector: 29334, prosody: 5222}

// pickPorts takes the well-known ports where they are free (or none of
// them with -free-ports), and distinct free ones otherwise.
func (d *demo) pickPorts() error {
	taken := map[int]bool{}
	pick := func(preferred int) (int, error) {
		if d.opts.freePorts {
			preferred = 0
		}
		for range 10 {
			p, err := devstack.PortOr(preferred)
			if err != nil {
				return 0, err
			}
			if !taken[p] {
				taken[p] = true
				return p, nil
			}
			preferred = 0
		}
		return 0, fmt.Errorf("no distinct free port found")
	}
	var err error
	for _, p := range []struct {
		dst       *int
		preferred int
	}{
		{&d.ports.dendrite, wellKnown.dendrite},
		{&d.ports.appservice, wellKnown.appservice},
		{&d.ports.connector, wellKnown.connector},
		{&d.ports.prosody, wellKnown.prosody},
	} {
		if *p.dst, err = pick(p.preferred); err != nil {
			return err
		}
	}
	return nil
}
