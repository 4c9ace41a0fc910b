-- v2 -> v3: Remember Matrix sends whose outcome is unknown
-- A row is written before a remote event's Matrix send and removed in the
-- transaction that stores the result. A row found later means the send may
-- or may not have landed (the bridge died, or the request was cut off): the
-- room is searched for it before anything is sent again.
CREATE TABLE in_doubt_send (
	txn_id     TEXT    NOT NULL PRIMARY KEY,
	room_id    TEXT    NOT NULL,
	login_id   TEXT    NOT NULL,
	chat_id    TEXT    NOT NULL,
	remote_id  TEXT    NOT NULL,
	part       INTEGER NOT NULL DEFAULT 0,
	event_type TEXT    NOT NULL,
	started_at BIGINT  NOT NULL,
	-- Set once the homeserver answered for a part whose mapping is written
	-- only with the last part's.
	event_id   TEXT    NOT NULL DEFAULT ''
);
