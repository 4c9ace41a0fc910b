-- v1 -> v2: Order pending commands by their Matrix event; keep handled event ids
-- Rows queued before this upgrade keep 0 and, being older, still go first.
ALTER TABLE pending_command ADD COLUMN mx_seq BIGINT NOT NULL DEFAULT 0;
-- Handled Matrix events are kept a day so a homeserver's retry is recognised
-- by event id; rows from before this upgrade count as old.
ALTER TABLE mx_event ADD COLUMN received_at BIGINT NOT NULL DEFAULT 0;
