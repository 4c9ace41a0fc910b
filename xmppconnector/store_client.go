package xmppconnector

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
)

var _ sdk.ClientStore = (*Store)(nil)

// effects is the connector's own state change that belongs to an event:
// the archive item it came from, the id mappings it creates, the reaction
// set it leaves behind. Committing them in the same transaction as the
// event (see Append) means a crash can neither lose a message (cursor
// moved, event not stored) nor bridge it twice (event stored, item not
// marked seen, archive replayed).
type effects struct {
	login    string
	stanzaID string // archive item to mark seen and move the cursor to; "" for none
	// keepCursor marks stanzaID seen without moving the cursor: archive
	// items before it may not have been bridged yet.
	keepCursor bool
	refs       []msgRef
	reactions  *reactionSet
}

// msgRef maps XMPP-side ids of one message to its bridge id.
type msgRef struct {
	chat     string
	bridgeID string
	xmppID   string   // what references to this message on XMPP use
	aliases  []string // other ids the message is known by (origin-id, stanza-id)
	author   string   // bare JID of the sender; only they may correct or retract it
}

// reactionSet is the complete set of one sender's reactions on one message.
type reactionSet struct {
	chat, target, sender string
	keys                 []string
}

type effectsKey struct{}

// withEffects attaches state changes to the next Append made with ctx. The
// SDK's Send passes its ctx to the store, which is how they travel.
func withEffects(ctx context.Context, e *effects) context.Context {
	return context.WithValue(ctx, effectsKey{}, e)
}

// Apply commits effects that come without an event.
func (s *Store) Apply(ctx context.Context, e *effects) error {
	return s.inTx(ctx, func(tx *sql.Tx) error { return applyEffects(ctx, tx, e) })
}

func applyEffects(ctx context.Context, tx *sql.Tx, e *effects) error {
	if e == nil {
		return nil
	}
	if e.stanzaID != "" {
		if err := markArchived(ctx, tx, e.login, e.stanzaID, !e.keepCursor); err != nil {
			return err
		}
	}
	for _, r := range e.refs {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO messages (login, chat, bridge_id, xmpp_id, author) VALUES (?, ?, ?, ?, ?)`,
			e.login, r.chat, r.bridgeID, r.xmppID, r.author); err != nil {
			return fmt.Errorf("mapping message %s: %w", r.bridgeID, err)
		}
		for _, ref := range append([]string{r.bridgeID, r.xmppID}, r.aliases...) {
			if ref == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO message_refs (login, chat, ref, bridge_id) VALUES (?, ?, ?, ?)`,
				e.login, r.chat, ref, r.bridgeID); err != nil {
				return fmt.Errorf("mapping message ref %s: %w", ref, err)
			}
		}
	}
	if rs := e.reactions; rs != nil {
		if _, err := tx.ExecContext(ctx, `DELETE FROM reactions WHERE login = ? AND chat = ? AND target = ? AND sender = ?`,
			e.login, rs.chat, rs.target, rs.sender); err != nil {
			return fmt.Errorf("clearing reactions: %w", err)
		}
		for _, k := range rs.keys {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO reactions (login, chat, target, sender, key) VALUES (?, ?, ?, ?, ?)`,
				e.login, rs.chat, rs.target, rs.sender, k); err != nil {
				return fmt.Errorf("storing reaction: %w", err)
			}
		}
	}
	return nil
}

// NextSeq implements sdk.ClientStore.
func (s *Store) NextSeq(ctx context.Context) (int64, error) {
	var next int64
	err := s.db.QueryRowContext(ctx, `SELECT next FROM seq WHERE id = 1`).Scan(&next)
	return next, err
}

// Append implements sdk.ClientStore; it also commits the effects
// attached to ctx with withEffects.
func (s *Store) Append(ctx context.Context, seq int64, ev *connector.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding event: %w", err)
	}
	e, _ := ctx.Value(effectsKey{}).(*effects)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE seq SET next = ? + 1 WHERE id = 1 AND next = ?`, seq, seq)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("append seq %d: not the next seq", seq)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (seq, event) VALUES (?, ?)`, seq, data); err != nil {
			return err
		}
		return applyEffects(ctx, tx, e)
	})
}

// Unacked implements sdk.ClientStore. SQLite reads a negative LIMIT as
// none, which is what a limit <= 0 asks for.
func (s *Store) Unacked(ctx context.Context, after int64, limit int) ([]sdk.StoredEvent, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, event FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sdk.StoredEvent
	for rows.Next() {
		var se sdk.StoredEvent
		var data []byte
		if err := rows.Scan(&se.Seq, &data); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(data, &se.Event); err != nil {
			return nil, fmt.Errorf("decoding stored event %d: %w", se.Seq, err)
		}
		out = append(out, se)
	}
	return out, rows.Err()
}

// Acked implements sdk.ClientStore.
func (s *Store) Acked(ctx context.Context, upTo int64) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq <= ?`, upTo); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE seq SET next = ? + 1 WHERE id = 1 AND next <= ?`, upTo, upTo)
		return err
	})
}

// Rebase implements sdk.ClientStore. The rows are read and written
// back rather than updated in place, since shifting primary keys up one row
// at a time can collide with a row not yet moved.
func (s *Store) Rebase(ctx context.Context, after int64) error {
	pending, err := s.Unacked(ctx, 0, 0)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox`); err != nil {
			return err
		}
		for i, se := range pending {
			data, err := json.Marshal(&se.Event)
			if err != nil {
				return fmt.Errorf("encoding event %d: %w", se.Seq, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (seq, event) VALUES (?, ?)`, after+1+int64(i), data); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `UPDATE seq SET next = ? WHERE id = 1`, after+1+int64(len(pending)))
		return err
	})
}

// TxnResult implements sdk.ClientStore.
func (s *Store) TxnResult(ctx context.Context, txn string) (*connector.Result, *connector.Error, bool, error) {
	var resData, errData []byte
	err := s.db.QueryRowContext(ctx, `SELECT result, error FROM txns WHERE txn = ?`, txn).Scan(&resData, &errData)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	var res *connector.Result
	var perr *connector.Error
	if resData != nil {
		res = new(connector.Result)
		if err := json.Unmarshal(resData, res); err != nil {
			return nil, nil, false, fmt.Errorf("decoding txn result: %w", err)
		}
	}
	if errData != nil {
		perr = new(connector.Error)
		if err := json.Unmarshal(errData, perr); err != nil {
			return nil, nil, false, fmt.Errorf("decoding txn error: %w", err)
		}
	}
	return res, perr, true, nil
}

// SaveTxnResult implements sdk.ClientStore.
func (s *Store) SaveTxnResult(ctx context.Context, txn string, res *connector.Result, e *connector.Error) error {
	var resData, errData []byte
	var err error
	if res != nil {
		if resData, err = json.Marshal(res); err != nil {
			return err
		}
	}
	if e != nil {
		if errData, err = json.Marshal(e); err != nil {
			return err
		}
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO txns (txn, result, error, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (txn) DO UPDATE SET result = excluded.result, error = excluded.error`,
		txn, resData, errData, time.Now().UnixMilli())
	return err
}
