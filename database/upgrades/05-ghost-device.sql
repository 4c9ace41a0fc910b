-- v5 -> v6: A device of its own for each ghost in an encrypted room
-- The Olm/Megolm keys live in mautrix-go's crypto tables (account_id = the
-- ghost's user id); this row holds what those tables do not: the device's
-- access token, and whether its to-device /sync loop runs.
CREATE TABLE ghost_device (
	mxid         TEXT    NOT NULL PRIMARY KEY,
	device_id    TEXT    NOT NULL,
	access_token TEXT    NOT NULL,
	syncing      BOOLEAN NOT NULL DEFAULT false
);

-- A ghost's cross-signing private keys (JSON seeds, AES-GCM under a key
-- derived from encryption.pickle_key): kept so that a ghost's next device
-- is signed by the same identity; the homeserver keeps the first upload.
CREATE TABLE ghost_cross_signing (
	mxid  TEXT  NOT NULL PRIMARY KEY,
	seeds BYTEA NOT NULL
);
