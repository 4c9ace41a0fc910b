// Package xmppconnector is the reference connector: it bridges one-to-one
// XMPP chats of configured accounts to the bridge through the connector
// SDK (package connector/sdk).
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
// reactions, contacts, avatars; its schema is versioned dbutil upgrades in
// upgrades/), session*.go, caps.go, mam.go, stanza.go
// (one XMPP stream: login, read loop, keep-alive, IQs, archive paging),
// xmlsplit.go (long character data cut into pieces before the XML
// decoder), offline.go (which messages the server stored),
// account*.go (one login: reconnect loop, archive catch-up, stanzas to
// events, backfill), commands.go (bridge commands to stanzas),
// commands_media.go and upload.go (files: HTTP File Upload, XEP-0363),
// client_gate.go (the SDK client, made once the first logins tell whether
// files can be sent), contacts.go (vCards, presence), vcard.go (the vCard
// answer, read as it arrives with its photo bounded), profiles.go (vCard
// fetches off the worker, throttled per contact) and avatars.go (the
// avatar endpoint).
//
// Files: each attachment of send_message is fetched (inline data as is, a
// url with the bridge token via the SDK), streamed with a PUT into a slot
// of the server's upload service, and shared as a message whose body and
// XEP-0066 url are the slot's GET URL, which is what clients show as a
// file. The slot request needs the exact size up front; it comes from the
// data or the download's Content-Length, and only a download without one
// is spooled to a temporary file. A file over the service's max-file-size
// is refused with M_UNSUPPORTED naming the limit. hello says media: true
// when an account's server offers an upload service; it cannot change
// later, so an account whose server has none answers files M_UNSUPPORTED.
//
// Ids: a message's id towards the bridge is the stanza-id our server's
// archive gave it (XEP-0359, by = the account), else its id attribute (or
// origin-id), else a fresh random id: a message with neither is not in the
// archive, so no other copy of it can come. A client id marks a repeat
// only when one of the two copies has no archive id (clients reuse ids).
// Stanzas sent for a command use the command's txn as id and origin-id,
// and the txn is also the id the command answers with, because the server
// does not tell the sender the stanza-id; the archive copy of such a send
// is reported with txn set and that same id.
package xmppconnector
