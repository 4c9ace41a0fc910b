-- v3 -> v4: Remember since when a login is in its state, its last event and its alert
-- Rows from before this upgrade count their state from the upgrade on.
ALTER TABLE login ADD COLUMN state_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login ADD COLUMN last_event_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login ADD COLUMN alerted TEXT NOT NULL DEFAULT '';
