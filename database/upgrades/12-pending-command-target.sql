-- v12 -> v13: The queued message an edit, a reaction or a reply waits for
-- An edit, a reaction or a reply of a message that is itself still queued
-- cannot name the network's id of it yet. The command is queued behind the
-- message with the message's Matrix event id here, and is given the
-- network's id when it goes (portal/relations_queued.go).
ALTER TABLE pending_command ADD COLUMN target_mx TEXT NOT NULL DEFAULT '';
