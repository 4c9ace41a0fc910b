-- v0 -> v2: Latest revision
-- A store written before the schema had versions is adopted as v1 without
-- running this file (see adoptUnversioned in store.go).

CREATE TABLE seq (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	next INTEGER NOT NULL
);
INSERT INTO seq (id, next) VALUES (1, 1);
CREATE TABLE outbox (
	seq   INTEGER PRIMARY KEY,
	event BLOB NOT NULL
);
CREATE TABLE txns (
	txn        TEXT PRIMARY KEY,
	result     BLOB,
	error      BLOB,
	created_at INTEGER NOT NULL
);
CREATE TABLE cursors (
	login     TEXT PRIMARY KEY,
	stanza_id TEXT NOT NULL
);
CREATE TABLE seen (
	login     TEXT NOT NULL,
	stanza_id TEXT NOT NULL,
	at        INTEGER NOT NULL,
	PRIMARY KEY (login, stanza_id)
);
CREATE INDEX seen_at ON seen (at);
CREATE INDEX txns_created_at ON txns (created_at);
CREATE TABLE messages (
	login     TEXT NOT NULL,
	chat      TEXT NOT NULL,
	bridge_id TEXT NOT NULL,
	xmpp_id   TEXT NOT NULL,
	-- Bare JID of who sent it; '' for rows from before it was recorded.
	author    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (login, chat, bridge_id)
);
-- Corrections and retractions name a message by its XMPP id, which
-- senders reuse: the latest one of the sender's counts (messageBy).
CREATE INDEX messages_xmpp_id ON messages (login, chat, xmpp_id);
CREATE TABLE message_refs (
	login     TEXT NOT NULL,
	chat      TEXT NOT NULL,
	ref       TEXT NOT NULL,
	bridge_id TEXT NOT NULL,
	PRIMARY KEY (login, chat, ref)
);
CREATE TABLE reactions (
	login  TEXT NOT NULL,
	chat   TEXT NOT NULL,
	target TEXT NOT NULL,
	sender TEXT NOT NULL,
	key    TEXT NOT NULL,
	PRIMARY KEY (login, chat, target, sender, key)
);
CREATE TABLE contacts (
	login     TEXT NOT NULL,
	jid       TEXT NOT NULL,
	name      TEXT NOT NULL,
	avatar_id TEXT NOT NULL,
	PRIMARY KEY (login, jid)
);
CREATE TABLE avatars (
	sha1     TEXT PRIMARY KEY,
	mimetype TEXT NOT NULL,
	data     BLOB NOT NULL
);
