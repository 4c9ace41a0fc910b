// Package xmppconnector is the reference connector: it bridges one-to-one
// XMPP chats of configured accounts to the bridge through the connector
// SDK (package connector).
//
// XMPP library: mellium.im/xmpp. Both candidates were tried against a real
// Prosody. mellium won because it takes a context everywhere (dial,
// negotiation, every send and IQ), correlates IQ answers with requests by
// itself (MAM paging, vCard fetches and disco run as plain request/answer
// calls while the read loop keeps going), exposes the stream as XML tokens
// so stanzas decode straight into encoding/xml structs, and negotiates
// SCRAM, STARTTLS and resource binding properly. github.com/xmppo/go-xmpp
// has a simpler API but no contexts, returns IQ answers through the same
// Recv as messages (so every request needs hand-made correlation),
// flattens unknown payloads into strings, and Send writes an origin-id of
// its own, while the connector must put the bridge's txn there. mellium's
// verbosity is confined to a few files here (session*.go, stanza.go).
//
// Layout: connector.go (wires the accounts to the SDK client), config.go,
// store*.go (the SQLite file: the SDK's event outbox and txn outcomes, and
// per account the archive cursor, bridged archive ids, id mappings,
// reactions, contacts, avatars), session*.go, caps.go, mam.go, stanza.go
// (one XMPP stream: login, read loop, keep-alive, IQs, archive paging),
// account*.go (one login: reconnect loop, archive catch-up, stanzas to
// events, backfill), commands.go (bridge commands to stanzas), contacts.go
// (vCards, presence) and avatars.go (the avatar endpoint).
//
// Ids: a message's id towards the bridge is the stanza-id our server's
// archive gave it (XEP-0359, by = the account), else its id attribute.
// Stanzas sent for a command use the command's txn as id and origin-id,
// and the txn is also the id the command answers with, because the server
// does not tell the sender the stanza-id; the archive copy of such a send
// is reported with txn set and that same id.
package xmppconnector
