-- v6 -> v7: Keys of encrypted files that connectors fetch through the bridge
-- An encrypted file from the user too large to pass inline: the connector
-- fetches it from the bridge's media endpoint under an unguessable handle,
-- and the bridge decrypts it while streaming. Its key, iv and hash (JSON,
-- AES-GCM under a key derived from encryption.pickle_key) stay here, out of
-- every URL; rows are pruned after 30 days.
CREATE TABLE encrypted_media (
	handle     TEXT   NOT NULL PRIMARY KEY,
	mxc        TEXT   NOT NULL,
	sealed     BYTEA  NOT NULL,
	mime_type  TEXT   NOT NULL,
	created_at BIGINT NOT NULL
);
