-- v13 -> v14: Which parts of a remote message carry the rest of its text
-- A long text arrives as several parts (or a preview and message.txt); an
-- edit from the network replaces the text, so it must redact those parts
-- but not the message's attachments, which follow them. Rows written
-- before this are false: an edit of such a message edits its first part.
ALTER TABLE message ADD COLUMN text_tail BOOLEAN NOT NULL DEFAULT false;
