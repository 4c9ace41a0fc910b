-- v11 -> v12: Whether a queued command was written to the connector
-- A command written to the connector whose answer never came (the
-- connection dropped, the bridge was killed) may have reached the network.
-- If the user deletes its event meanwhile, the command must go again and
-- its result be deleted there; only a command never written is dropped
-- (portal/early_redaction.go). Rows from before this upgrade may have gone
-- out, so they count as written.
ALTER TABLE pending_command ADD COLUMN handed BOOLEAN NOT NULL DEFAULT false;
UPDATE pending_command SET handed=true;
