// Package conformance checks a connector against the connector protocol
// (docs/connector-protocol.md) by playing the bridge's side of it.
//
// The suite listens exactly as the bridge does (ws://host:port/_connector/v1,
// bearer token, subprotocol dmbridge.v1), but its bridge side is scripted
// rather than the real connector.Server: it withholds acks, drops the
// connection mid-stream, answers welcome with an acked_seq below (or above)
// what the connector has sent, claims a seq gap and sends malformed
// commands, none of which the real server would do on purpose.
//
// A connector is plugged in through a Target, which starts and stops it and
// makes it emit events; NetworkObserver and Restarter are optional extras.
// Run executes the checks in a fixed order on one connector and one event
// stream, returning one Result per check; RunT does the same inside a Go
// test. SDKTarget is a minimal in-process connector built on the SDK, the
// reference target and a template for others; cmd/connector-conformance
// runs the suite against connectors in any language.
//
// Throughout the run every event must carry the next seq (welcome's
// acked_seq+1 after each handshake, then one more each time), stay within
// max_in_flight, and repeat its first data exactly when sent again; the
// check during which a breach happens fails with it. The checks, by name:
//
//	hello               the first frame is a well-formed hello: protocol
//	                    contains 1, connector.id and network.id are set,
//	                    every login has id and a Matrix user id as
//	                    matrix_user; the connector dialled with the bearer
//	                    token and the dmbridge.v1 subprotocol
//	ping                a websocket ping gets its pong
//	seq                 events start at welcome.acked_seq+1 and increase
//	                    by exactly one
//	err-unknown-op      a cmd with an unknown op gets an err with its id
//	err-missing-fields  a cmd without op gets M_BAD_FRAME with its id, one
//	                    without id M_BAD_FRAME; a send_message without chat
//	                    and text gets an err with its id
//	err-unknown-login   a cmd for a login the connector does not have gets
//	                    M_NOT_FOUND or M_FORBIDDEN with its id
//	err-bad-frame       invalid JSON gets M_BAD_FRAME, an unknown frame type
//	                    M_UNKNOWN_KIND with the frame's id, and neither ends
//	                    the connection
//	txn-repeat          one send_message txn under two cmd ids is answered
//	                    twice with identical results and acts once
//	history             with capability backfill, backfill of the target's
//	                    chat returns valid message events of that chat
//	                    (login and chat may be left out: the bridge sets
//	                    them), oldest first, at most limit; with list_chats, the
//	                    answer has complete chats, each once, at most limit
//	                    (skipped without either capability)
//	bad-seq-resend      after err M_BAD_SEQ the connector resends from the
//	                    last acked seq + 1
//	replay-reconnect    events left unacked when the suite drops the
//	                    connection are resent, identical and in order, after
//	                    a welcome whose acked_seq is below what was sent
//	max-in-flight       with welcome.max_in_flight small and acks withheld,
//	                    neither a replayed backlog nor live events exceed it
//	txn-after-reconnect a command whose answer was lost with the
//	                    connection, re-sent with the same txn on the next
//	                    one, is answered with a result and acts once
//	replay-restart      as replay-reconnect, across a restart of the
//	                    connector process
//	acked-seq-ahead     after a welcome whose acked_seq is beyond anything
//	                    the connector sent (its store was restored from a
//	                    backup), the events it stored meanwhile and new ones
//	                    come at acked_seq+1 on: lower seqs would be dropped
//	                    as replays
//	frames-valid        every frame of the run was well-formed: events and
//	                    ephemerals with the fields their kind requires
//	                    (sections 4, 5 and 7.3) and a known login, no frame
//	                    types reserved to the bridge
//
// "Acts once" is checked on the network when the Target is a
// NetworkObserver, and by comparing the answers otherwise.
package conformance
