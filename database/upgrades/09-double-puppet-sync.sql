-- v9 -> v10: Where each double puppet's /sync stands
-- With double_puppet.sync the bridge follows a double-puppeted user's /sync
-- for the redactions the homeserver does not push (dpsync). The position
-- after the last response taken in is stored with its events in one
-- transaction, so a restart neither misses nor repeats one.
CREATE TABLE double_puppet_sync (
	mxid       TEXT NOT NULL PRIMARY KEY,
	next_batch TEXT NOT NULL
);
