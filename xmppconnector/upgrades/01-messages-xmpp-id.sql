-- v1 -> v2: Index messages by XMPP id, for corrections naming a reused id
CREATE INDEX messages_xmpp_id ON messages (login, chat, xmpp_id);
