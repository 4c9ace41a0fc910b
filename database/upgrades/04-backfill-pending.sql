-- v4 -> v5: Remember new portals and logins whose history is still to come
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

-- Logins seen for the first time whose recent chats are still to be made
-- portals (bridge.backfill.sync_recent_chats); see portal/syncchats.go.
CREATE TABLE login_sync_pending (
	login_id TEXT NOT NULL PRIMARY KEY,

	CONSTRAINT login_sync_pending_login_fkey FOREIGN KEY (login_id) REFERENCES login (id)
		ON DELETE CASCADE ON UPDATE CASCADE
);
