package xmppconnector

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// BridgeID returns the bridge id of the message that XMPP knows as ref in
// chat, and whether it is known.
func (s *Store) BridgeID(ctx context.Context, login, chat, ref string) (string, bool, error) {
	id, ok, err := s.lookup(ctx, `SELECT bridge_id FROM message_refs WHERE login = ? AND chat = ? AND ref = ?`, login, chat, ref)
	if err != nil {
		return "", false, fmt.Errorf("looking up message %s: %w", ref, err)
	}
	return id, ok, nil
}

// MessageBy returns the bridge id of the latest message in chat that
// author sent with XMPP id xmppID. Clients and bots reuse ids, and a
// correction or retraction naming one means the sender's latest message
// with it, as XMPP clients read it (BridgeID keeps the first).
func (s *Store) MessageBy(ctx context.Context, login, chat, xmppID, author string) (string, bool, error) {
	id, ok, err := s.lookup(ctx, `SELECT bridge_id FROM messages WHERE login = ? AND chat = ? AND xmpp_id = ? AND author = ?
		ORDER BY rowid DESC LIMIT 1`, login, chat, xmppID, author)
	if err != nil {
		return "", false, fmt.Errorf("looking up the latest message %s of %s: %w", xmppID, author, err)
	}
	return id, ok, nil
}

// lookup runs a query for one text column of at most one row and reports
// whether there was a row.
func (s *Store) lookup(ctx context.Context, query string, args ...any) (string, bool, error) {
	var v string
	err := s.db.QueryRowContext(ctx, query, args...).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return v, err == nil, err
}

// XMPPID returns the id XMPP references to the message with bridge id
// bridgeID use; an unknown message is assumed to use its bridge id.
func (s *Store) XMPPID(ctx context.Context, login, chat, bridgeID string) (string, error) {
	id, ok, err := s.lookup(ctx, `SELECT xmpp_id FROM messages WHERE login = ? AND chat = ? AND bridge_id = ?`, login, chat, bridgeID)
	if err != nil {
		return "", fmt.Errorf("looking up message %s: %w", bridgeID, err)
	}
	if !ok {
		return bridgeID, nil
	}
	return id, nil
}

// Author returns the bare JID that sent the message with bridge id
// bridgeID in chat ("" for a message stored before authors were), and
// whether the message is known at all.
func (s *Store) Author(ctx context.Context, login, chat, bridgeID string) (string, bool, error) {
	author, ok, err := s.lookup(ctx, `SELECT author FROM messages WHERE login = ? AND chat = ? AND bridge_id = ?`, login, chat, bridgeID)
	if err != nil {
		return "", false, fmt.Errorf("looking up the author of %s: %w", bridgeID, err)
	}
	return author, ok, nil
}

// Reactions returns sender's current reaction keys on target.
func (s *Store) Reactions(ctx context.Context, login, chat, target, sender string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key FROM reactions WHERE login = ? AND chat = ? AND target = ? AND sender = ? ORDER BY key`,
		login, chat, target, sender)
	if err != nil {
		return nil, fmt.Errorf("loading reactions: %w", err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// storedContact is what was last told to the bridge about a contact.
type storedContact struct {
	Name     string
	AvatarID string
}

// Contact returns the stored profile of jid, and whether there is one.
func (s *Store) Contact(ctx context.Context, login, jid string) (storedContact, bool, error) {
	var c storedContact
	err := s.db.QueryRowContext(ctx, `SELECT name, avatar_id FROM contacts WHERE login = ? AND jid = ?`, login, jid).
		Scan(&c.Name, &c.AvatarID)
	if errors.Is(err, sql.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("loading contact %s: %w", jid, err)
	}
	return c, true, nil
}

// PutContact records the profile the bridge now has for jid. The picture
// it replaces goes once no contact shows it: a contact changing pictures
// every minute would otherwise grow the store without end. If the bridge
// has not fetched the old one yet, it gets a 404, which it takes as final
// for that picture, and goes on to this one.
func (s *Store) PutContact(ctx context.Context, login, jid string, c storedContact) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var old string
		err := tx.QueryRowContext(ctx, `SELECT avatar_id FROM contacts WHERE login = ? AND jid = ?`, login, jid).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("loading contact %s: %w", jid, err)
		}
		if _, err = tx.ExecContext(ctx, `INSERT INTO contacts (login, jid, name, avatar_id) VALUES (?, ?, ?, ?)
			ON CONFLICT (login, jid) DO UPDATE SET name = excluded.name, avatar_id = excluded.avatar_id`,
			login, jid, c.Name, c.AvatarID); err != nil {
			return fmt.Errorf("storing contact %s: %w", jid, err)
		}
		if old == "" || old == c.AvatarID {
			return nil
		}
		if _, err = tx.ExecContext(ctx, `DELETE FROM avatars WHERE sha1 = ?
			AND NOT EXISTS (SELECT 1 FROM contacts WHERE avatar_id = ?)`, old, old); err != nil {
			return fmt.Errorf("deleting replaced avatar %s: %w", old, err)
		}
		return nil
	})
}

// PutAvatar stores picture bytes under their SHA-1 (hex).
func (s *Store) PutAvatar(ctx context.Context, sha1, mimetype string, data []byte) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO avatars (sha1, mimetype, data) VALUES (?, ?, ?)`, sha1, mimetype, data)
	if err != nil {
		return fmt.Errorf("storing avatar %s: %w", sha1, err)
	}
	return nil
}

// Avatar returns a stored picture; ok is false if there is none.
func (s *Store) Avatar(ctx context.Context, sha1 string) (mimetype string, data []byte, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT mimetype, data FROM avatars WHERE sha1 = ?`, sha1).Scan(&mimetype, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("loading avatar %s: %w", sha1, err)
	}
	return mimetype, data, true, nil
}
