-- v14 -> v15: Where in its connector's stream a login was last logged out
-- A login's bad_credentials ends its portals; an event of the login from
-- before that point, applied after it (another chat's lane), must not open
-- a portal again. 0: never logged out, which is what rows from before this
-- upgrade say.
ALTER TABLE login ADD COLUMN ended_seq BIGINT NOT NULL DEFAULT 0;
