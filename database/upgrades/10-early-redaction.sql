-- v10 -> v11: Events the user deleted before the bridge handled them
-- A redaction can reach the bridge before the event it removes: through
-- double_puppet.sync it comes from /sync while the homeserver's push of the
-- event waits out a retry, and a message the user sends and deletes while
-- the connector is away has no mapping yet. The redaction is noted here; the
-- event, when it comes, is not sent, nor is a command queued for it. Rows go
-- after intakeRetention, like the intake's own.
CREATE TABLE early_redaction (
	event_id     TEXT   NOT NULL PRIMARY KEY,
	room_id      TEXT   NOT NULL,
	redaction_id TEXT   NOT NULL,
	created_at   BIGINT NOT NULL
);
