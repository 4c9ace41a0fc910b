package main

import (
	"encoding/json"
	"fmt"
)

// printProof shows the DM as the homeserver has it.
func (d *demo) printProof(p *proof) {
	direct, _ := json.Marshal(map[string]any{string(p.ghost): p.direct[p.ghost]})
	d.say("")
	d.say("== Proof: bob's XMPP message is a Matrix DM for @alice:localhost ==")
	d.say("DM room:        %s", p.room)
	d.say("bob's ghost:    %s", p.ghost)
	d.say("alice's invite (sent by the ghost, is_direct):")
	d.say("  %s", compact(p.invite))
	d.say("alice's m.direct entry (ghost -> room):")
	d.say("  %s", direct)
	d.say("the message in alice's /sync:")
	d.say("  %s", compact(p.message))
	d.say("Checked: alice is joined, the room is in her m.direct under bob's ghost, the invite is is_direct, the message arrived.")
	d.say("PROOF OK")
}

// printGuide tells how to go on with ordinary clients.
func (d *demo) printGuide() {
	d.say("")
	d.say("== Keep chatting ==")
	d.say("Matrix (Element, Cinny, ...; the homeserver has no TLS, so use a client that allows http):")
	d.say("  homeserver  http://127.0.0.1:%d%s", d.ports.dendrite, d.portNote(d.ports.dendrite, wellKnown.dendrite))
	d.say("  user        @alice:localhost  (or just: alice)")
	d.say("  password    %s", d.secrets.aliceMatrix)
	d.say("XMPP as bob (Gajim, Dino, Profanity, ...; plain connection, no TLS, on loopback):")
	d.say("  server      127.0.0.1:%d%s", d.ports.prosody, d.portNote(d.ports.prosody, wellKnown.prosody))
	d.say("  account     bob@localhost / %s", d.secrets.bobXMPP)
	d.say("  e.g.        profanity, then: /connect bob@localhost server 127.0.0.1 port %d tls disable", d.ports.prosody)
	d.say("  alice's own XMPP account (bridged for her by the connector): alice@localhost / %s", d.secrets.aliceXMPP)
	d.say("Write to alice@localhost as bob, and answer from Matrix in the DM.")
	d.say("Edits, replies, reactions, deletions, typing, read markers and files go both ways. Dendrite does")
	d.say("not pass the deletions, typing and read markers to bridges; the bridge follows alice's own /sync")
	d.say("for them (double_puppet.sync, docs/homeservers.md).")
	d.say("")
	d.say("Bridge: appservice http://127.0.0.1:%d%s, connectors ws://127.0.0.1:%d%s",
		d.ports.appservice, d.portNote(d.ports.appservice, wellKnown.appservice),
		d.ports.connector, d.portNote(d.ports.connector, wellKnown.connector))
	d.say("Configs and logs: %s (bridge/, xmpp-connector/, logs/, dendrite/); Prosody's: %s", d.opts.stateDir, d.prosodyDir)
	d.say("")
}

// portNote says when a port is not the usual one, and why.
func (d *demo) portNote(got, preferred int) string {
	if got == preferred || d.opts.freePorts {
		return ""
	}
	return fmt.Sprintf("  (%d was taken)", preferred)
}
