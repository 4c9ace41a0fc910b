-- v10 -> v11: Events the user deleted before the bridge handled them
-- A redaction can reach the bridge before the event it removes: through
-- double_puppet.sync it comes from /sync while the homeserver's push of the
-- event waits out a retry, and a message the user sends and deletes while
-- the connector is away may have a queued command that already went out
-- once. The redaction is noted here, per room; the event, when it comes, is
-- not sent, and a queued command for it is dropped or, if it went out once,
-- sent again and then deleted (portal/early_redaction.go). Rows go after intakeRetention, except while
-- their event still has a queued command.
CREATE TABLE early_redaction (
	event_id     TEXT   NOT NULL,
	room_id      TEXT   NOT NULL,
	redaction_id TEXT   NOT NULL,
	created_at   BIGINT NOT NULL,
	PRIMARY KEY (event_id, room_id)
);
