-- v0 -> v17: Latest revision

-- A network account held by a connector, owned by one Matrix user.
CREATE TABLE login (
	id           TEXT   NOT NULL PRIMARY KEY,
	connector_id TEXT   NOT NULL,
	matrix_user  TEXT   NOT NULL,
	name         TEXT   NOT NULL DEFAULT '',
	state        TEXT   NOT NULL DEFAULT '',
	updated_at   BIGINT NOT NULL DEFAULT 0,
	-- When the login entered its state (unix ms); 0 = unknown.
	state_since   BIGINT NOT NULL DEFAULT 0,
	-- When its last connector event was applied (unix ms), written at most
	-- every few seconds; see portal/loginwatch.go.
	last_event_at BIGINT NOT NULL DEFAULT 0,
	-- The trouble the user was last told about in their management room
	-- ('bad_credentials', 'disconnected'), '' when none: one alert per episode.
	alerted       TEXT   NOT NULL DEFAULT '',
	-- The connector seq at which the login was last logged out
	-- (bad_credentials), 0 for never: its events from before that point
	-- open no portal (see portal/loginend.go).
	ended_seq     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX login_matrix_user_idx ON login (matrix_user);

-- A Matrix user the bridge knows (management room, double puppet state).
CREATE TABLE matrix_user (
	mxid            TEXT    NOT NULL PRIMARY KEY,
	management_room TEXT,
	double_puppet   BOOLEAN NOT NULL DEFAULT false
);

-- One ghost (puppet) per contact id on the network.
CREATE TABLE ghost (
	id          TEXT    NOT NULL PRIMARY KEY,
	mxid        TEXT    NOT NULL UNIQUE,
	name        TEXT    NOT NULL DEFAULT '',
	name_set    BOOLEAN NOT NULL DEFAULT false,
	avatar_id   TEXT    NOT NULL DEFAULT '',
	avatar_mxc  TEXT    NOT NULL DEFAULT '',
	avatar_set  BOOLEAN NOT NULL DEFAULT false,
	registered  BOOLEAN NOT NULL DEFAULT false
);

-- One portal per (login, chat). The row exists before the room does, so that a
-- crash between createRoom and storing the room id can be recovered.
CREATE TABLE portal (
	login_id       TEXT    NOT NULL,
	chat_id        TEXT    NOT NULL,
	contact_id     TEXT    NOT NULL,
	room_id        TEXT    UNIQUE,
	create_started BOOLEAN NOT NULL DEFAULT false,
	user_joined    BOOLEAN NOT NULL DEFAULT false,
	in_direct      BOOLEAN NOT NULL DEFAULT false,
	created_at     BIGINT  NOT NULL,

	PRIMARY KEY (login_id, chat_id),
	CONSTRAINT portal_login_fkey FOREIGN KEY (login_id) REFERENCES login (id)
		ON DELETE CASCADE ON UPDATE CASCADE
);

-- A contact's portals are looked up on each profile change of the contact.
CREATE INDEX portal_contact_idx ON portal (contact_id);

-- Rooms the bridge itself cleaned up, so the m.direct repair may remove them.
CREATE TABLE cleaned_room (
	matrix_user TEXT   NOT NULL,
	room_id     TEXT   NOT NULL,
	ghost_mxid  TEXT   NOT NULL,
	cleaned_at  BIGINT NOT NULL,
	PRIMARY KEY (matrix_user, room_id)
);

-- Remote message id <-> Matrix event id. A remote message with attachments
-- becomes several Matrix events, numbered by part.
CREATE TABLE message (
	login_id  TEXT    NOT NULL,
	chat_id   TEXT    NOT NULL,
	remote_id TEXT    NOT NULL,
	part      INTEGER NOT NULL DEFAULT 0,
	mxid      TEXT    NOT NULL UNIQUE,
	room_id   TEXT    NOT NULL,
	sender_id TEXT    NOT NULL,
	is_me     BOOLEAN NOT NULL DEFAULT false,
	ts        BIGINT  NOT NULL,
	-- A part after the first that carries the rest of a long text (a
	-- split part, message.txt): an edit from the network redacts it.
	text_tail BOOLEAN NOT NULL DEFAULT false,

	PRIMARY KEY (login_id, chat_id, remote_id, part)
	-- No foreign key to the portal on PostgreSQL (see 15-message-no-fkey.sql):
	-- the code deletes a portal's messages itself (database/portal.go).
-- only: sqlite for next 2 lines
	, CONSTRAINT message_portal_fkey FOREIGN KEY (login_id, chat_id) REFERENCES portal (login_id, chat_id)
		ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX message_room_ts_idx ON message (room_id, ts);

CREATE TABLE reaction (
	login_id  TEXT NOT NULL,
	chat_id   TEXT NOT NULL,
	target_id TEXT NOT NULL,
	sender_id TEXT NOT NULL,
	key       TEXT NOT NULL,
	remote_id TEXT NOT NULL DEFAULT '',
	mxid      TEXT NOT NULL UNIQUE,

	PRIMARY KEY (login_id, chat_id, target_id, sender_id, key),
	CONSTRAINT reaction_portal_fkey FOREIGN KEY (login_id, chat_id) REFERENCES portal (login_id, chat_id)
		ON DELETE CASCADE ON UPDATE CASCADE
);

-- Connector stream: the highest seq durably accepted per connector id.
CREATE TABLE connector_stream (
	connector_id TEXT   NOT NULL PRIMARY KEY,
	acked_seq    BIGINT NOT NULL
);

-- Accepted connector events waiting to be applied. Rows are kept until done.
CREATE TABLE inbox (
	connector_id TEXT    NOT NULL,
	seq          BIGINT  NOT NULL,
	login_id     TEXT    NOT NULL,
	chat_id      TEXT    NOT NULL DEFAULT '',
	kind         TEXT    NOT NULL,
	data         TEXT    NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	done         BOOLEAN NOT NULL DEFAULT false,
	error        TEXT    NOT NULL DEFAULT '',

	PRIMARY KEY (connector_id, seq)
);
-- Only the pending rows (16-pending-partial-indexes.sql).
CREATE INDEX inbox_pending_idx ON inbox (connector_id, seq) WHERE done=false;

-- Appservice transactions already taken in (dedup across restarts).
CREATE TABLE as_txn (
	txn_id      TEXT   NOT NULL PRIMARY KEY,
	received_at BIGINT NOT NULL
);

-- Matrix events taken in with their transaction, applied in order.
-- only: postgres
CREATE TABLE mx_event (seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
-- only: sqlite
CREATE TABLE mx_event (seq INTEGER PRIMARY KEY AUTOINCREMENT,
	event_id TEXT    NOT NULL UNIQUE,
	room_id  TEXT    NOT NULL,
	data     TEXT    NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	done     BOOLEAN NOT NULL DEFAULT false,
	error    TEXT    NOT NULL DEFAULT '',
	-- Handled rows are kept for a day: their event ids recognise a
	-- homeserver's retry, which may carry them again under any txn id.
	received_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX mx_event_pending_idx ON mx_event (seq) WHERE done=false;

-- Commands to the connector whose result is not yet stored. txn is the Matrix
-- event id that caused it, the connector's idempotency key.
CREATE TABLE pending_command (
	txn          TEXT    NOT NULL PRIMARY KEY,
	connector_id TEXT    NOT NULL,
	login_id     TEXT    NOT NULL,
	chat_id      TEXT    NOT NULL,
	room_id      TEXT    NOT NULL,
	op           TEXT    NOT NULL,
	data         TEXT    NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	created_at   BIGINT  NOT NULL,
	-- The causing mx_event's seq. Commands go out in this order: created_at
	-- is a wall clock in milliseconds, and txn (an event id) is random.
	mx_seq       BIGINT  NOT NULL DEFAULT 0,
	-- Written to the connector at least once: it may have reached the
	-- network even without an answer (portal/early_redaction.go).
	handed       BOOLEAN NOT NULL DEFAULT false,
	-- For an edit, a reaction or a reply of a message still queued: that
	-- message's Matrix event id, whose network id the command gets when it
	-- goes.
	target_mx    TEXT    NOT NULL DEFAULT ''
);

-- Matrix sends for remote events whose outcome is not known yet; see
-- portal/indoubt.go. Removed in the transaction that stores the result.
CREATE TABLE in_doubt_send (
	txn_id     TEXT    NOT NULL PRIMARY KEY,
	room_id    TEXT    NOT NULL,
	login_id   TEXT    NOT NULL,
	chat_id    TEXT    NOT NULL,
	remote_id  TEXT    NOT NULL,
	part       INTEGER NOT NULL DEFAULT 0,
	event_type TEXT    NOT NULL,
	started_at BIGINT  NOT NULL,
	event_id   TEXT    NOT NULL DEFAULT ''
);

-- New portals whose history is still to be backfilled; see
-- portal/backfill.go. Removed once the history is in the room.
CREATE TABLE backfill_pending (
	login_id TEXT NOT NULL,
	chat_id  TEXT NOT NULL,

	PRIMARY KEY (login_id, chat_id),
	CONSTRAINT backfill_pending_portal_fkey FOREIGN KEY (login_id, chat_id) REFERENCES portal (login_id, chat_id)
		ON DELETE CASCADE ON UPDATE CASCADE
);

-- Logins seen for the first time whose recent chats are still to be made
-- portals (bridge.backfill.sync_recent_chats); see portal/syncchats.go.
CREATE TABLE login_sync_pending (
	login_id TEXT NOT NULL PRIMARY KEY,

	CONSTRAINT login_sync_pending_login_fkey FOREIGN KEY (login_id) REFERENCES login (id)
		ON DELETE CASCADE ON UPDATE CASCADE
);

-- Each ghost's own device for encrypted rooms; its keys are in mautrix-go's
-- crypto tables (account_id = mxid). See e2ee/.
CREATE TABLE ghost_device (
	mxid         TEXT    NOT NULL PRIMARY KEY,
	device_id    TEXT    NOT NULL,
	access_token TEXT    NOT NULL,
	syncing      BOOLEAN NOT NULL DEFAULT false,
	-- Set once the device's one-time keys on the homeserver are known to
	-- be its account's (e2ee/otkrepair.go); new devices are stored so.
	keys_checked BOOLEAN NOT NULL DEFAULT false
);

-- A ghost's cross-signing private keys (JSON seeds, AES-GCM under a key
-- derived from encryption.pickle_key): kept so that a ghost's next device
-- is signed by the same identity; the homeserver keeps the first upload.
CREATE TABLE ghost_cross_signing (
	mxid  TEXT  NOT NULL PRIMARY KEY,
	seeds BYTEA NOT NULL
);

-- An encrypted file from the user too large to pass inline: the connector
-- fetches it from the bridge's media endpoint under an unguessable handle,
-- and the bridge decrypts it while streaming. Its key, iv and hash (JSON,
-- AES-GCM under a key derived from encryption.pickle_key) stay here, out of
-- every URL; rows are pruned after 30 days.
CREATE TABLE encrypted_media (
	handle     TEXT   NOT NULL PRIMARY KEY,
	mxc        TEXT   NOT NULL,
	sealed     BYTEA  NOT NULL,
	mime_type  TEXT   NOT NULL,
	created_at BIGINT NOT NULL
);

-- Where a double puppet's /sync stands (double_puppet.sync, dpsync): the
-- position after the last response taken in, stored with its events.
CREATE TABLE double_puppet_sync (
	mxid       TEXT NOT NULL PRIMARY KEY,
	next_batch TEXT NOT NULL
);

-- An event the user deleted before the bridge handled it (portal,
-- early_redaction.go): when it comes, it is not sent. Pruned after a day,
-- unless the event still has a queued command.
CREATE TABLE early_redaction (
	event_id     TEXT   NOT NULL,
	room_id      TEXT   NOT NULL,
	redaction_id TEXT   NOT NULL,
	created_at   BIGINT NOT NULL,
	PRIMARY KEY (event_id, room_id)
);
