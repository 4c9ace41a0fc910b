-- v3 -> v4: Remember new portals whose history is still to be backfilled
-- A row is written with the portal row and removed once the history is in
-- the room, so a backfill cut off by a crash resumes. Portals from before
-- this upgrade get no row: their rooms already have their history.
CREATE TABLE backfill_pending (
	login_id TEXT NOT NULL,
	chat_id  TEXT NOT NULL,

	PRIMARY KEY (login_id, chat_id),
	CONSTRAINT backfill_pending_portal_fkey FOREIGN KEY (login_id, chat_id) REFERENCES portal (login_id, chat_id)
		ON DELETE CASCADE ON UPDATE CASCADE
);
