package portal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
)

// applyRemote applies one connector event. done marks the inbox row applied;
// handlers call it inside the transaction that stores their own result, so
// that a crash never leaves the two apart.
func (m *Manager) applyRemote(ctx context.Context, connectorID string, ev *connector.Event, done func(context.Context) error) (err error) {
	defer func() {
		if err != nil {
			m.stats.matrixErrors.Add(1)
		}
	}()
	login, err := m.db.Login.Get(ctx, ev.Login)
	if err != nil {
		return fmt.Errorf("load login %s: %w", ev.Login, err)
	} else if login == nil {
		zerolog.Ctx(ctx).Warn().Msg("Dropping event of a login that no longer exists")
		return done(ctx)
	}
	m.noteLoginEvent(ctx, login.ID)
	if ev.Chat != nil {
		// Invites, start-chat and cleanups change portals too; see
		// chatlocks.go. A pipeline may keep the lock (pipeline.go).
		var hold *chatHold
		ctx, hold = m.holdChat(ctx, database.PortalKey{LoginID: login.ID, ChatID: ev.Chat.ID})
		defer hold.release()
	}
	switch ev.Kind {
	case connector.KindMessage:
		return m.remoteMessage(ctx, connectorID, login, ev, done)
	case connector.KindEdit, connector.KindDelete, connector.KindReaction, connector.KindReactionRemove, connector.KindReadReceipt:
		return m.remoteRelation(ctx, login, ev, done)
	case connector.KindContact:
		return m.remoteContact(ctx, connectorID, ev, done)
	case connector.KindLogin:
		return m.remoteLoginState(ctx, login, ev, done)
	case connector.KindChatDeleted:
		return m.remoteChatDeleted(ctx, connectorID, login, ev, done)
	default:
		zerolog.Ctx(ctx).Warn().Msg("No handler for this event kind, dropping it")
		return done(ctx)
	}
}

// remoteTxnID is the deterministic transaction id of a Matrix send caused by
// a connector event: a retry reuses it, so a homeserver that remembers it
// answers with the event it already has. A request that was cut off is not
// remembered by Dendrite; indoubt.go covers that case.
func remoteTxnID(ev *connector.Event, part int) string {
	return hashedTxnID("dmb_", ev.Login, ev.Chat.ID, ev.ID, ev.Kind, strconv.Itoa(part))
}

// hashedTxnID is prefix followed by a hash of parts, for a transaction id
// that the same cause always yields: each part ends in a NUL, so that no
// two lists of parts hash alike, and 16 bytes of SHA-256 keep ids short
// while collisions stay out of reach. The scheme must not change: ids of
// sends still in flight at an upgrade would no longer match.
//
// The bytes are hashed from one buffer on the stack into one string: it
// runs for every send, and the hasher, the digest and the hex text were
// allocations of their own.
func hashedTxnID(prefix string, parts ...string) string {
	var in [256]byte
	buf := in[:0]
	for _, s := range parts {
		buf = append(append(buf, s...), 0)
	}
	sum := sha256.Sum256(buf)
	var out [64]byte
	return string(hex.AppendEncode(append(out[:0], prefix...), sum[:16]))
}

// senderIntent is who posts a remote event: the contact's ghost, or the user's
// double puppet for the user's own messages from another device.
func (m *Manager) senderIntent(ctx context.Context, login *database.Login, p *database.Portal, sender *connector.Sender) (matrix.API, bool, error) {
	if sender != nil && sender.IsMe {
		dp, err := m.dps.Intent(ctx, login.MatrixUser)
		if err != nil {
			return nil, false, err
		}
		if dp != nil {
			return dp, true, nil
		}
		// Without double puppeting the ghost posts it, marked as the user's.
		return m.ghosts.Intent(p.ContactID), true, nil
	}
	return m.ghosts.Intent(p.ContactID), false, nil
}

// notFrom reports whether sender is someone other than the DM's contact and
// the user: in a DM the other side is the contact, and anything from anyone
// else would show as the contact's (the ghost posts it) or act on what is
// not theirs.
func notFrom(sender *connector.Sender, contactID string) bool {
	return sender != nil && !sender.IsMe && sender.ID != contactID
}

// skipStranger marks handled an event whose sender is not the chat's contact.
func skipStranger(ctx context.Context, ev *connector.Event, contactID string, done func(context.Context) error) error {
	zerolog.Ctx(ctx).Warn().Str("kind", ev.Kind).Str("sender", ev.Sender.ID).Str("contact", contactID).
		Msg("Event from someone who is not the chat's contact, skipping it")
	return done(ctx)
}

func (m *Manager) remoteMessage(ctx context.Context, connectorID string, login *database.Login, ev *connector.Event, done func(context.Context) error) error {
	if notFrom(ev.Sender, ev.Chat.With) {
		// As for relations and backfilled messages, it is skipped (and
		// acked), and no portal is made for it.
		return skipStranger(ctx, ev, ev.Chat.With, done)
	}
	key := database.PortalKey{LoginID: login.ID, ChatID: ev.Chat.ID}
	// A replay of a plain message is recognised where its send would
	// start, in the statement that marks the send in doubt (unlessBridged):
	// one round trip less per message. Attachments are fetched and uploaded
	// before that point and an echo maps without a send, so those are
	// checked here first.
	checkAtSend := len(ev.Attachments) == 0 && ev.Txn == ""
	if !checkAtSend {
		if existing, err := m.db.Message.GetPart(ctx, key, ev.ID, 0); err != nil {
			return err
		} else if existing != nil {
			zerolog.Ctx(ctx).Debug().Msg("Message already bridged, skipping replay")
			return done(ctx)
		}
	}
	if ev.Txn != "" {
		if handled, err := m.recogniseEcho(ctx, key, ev, done); handled || err != nil {
			return err
		}
	}
	if e := entryOf(ctx, ev); e != nil {
		if ended, err := m.claimPortal(ctx, key, contactOfChat(ev.Chat), e.Seq); err != nil {
			return err
		} else if ended {
			// Sent before the logout that ended the login's portals, and
			// applied after it: a new portal now would look bridged for a
			// login that is gone (loginend.go).
			zerolog.Ctx(ctx).Warn().Str("message_id", ev.ID).
				Msg("Dropping a message from before its login was logged out: it would open a portal for a login that is gone")
			return done(ctx)
		}
	}
	p, err := m.ensurePortal(ctx, login, connectorID, ev.Chat)
	if err != nil {
		return err
	}
	if notFrom(ev.Sender, p.ContactID) {
		// The portal's contact is the one it was made for; an event that
		// names another one as chat.with does not change that.
		return skipStranger(ctx, ev, p.ContactID, done)
	}
	if _, err = m.backfill(ctx, connectorID, login, p, ev); err != nil {
		return err
	}
	_, err = m.postMessageChecked(ctx, login, p, ev, done, checkAtSend)
	return err
}

// postMessage posts a message event into its portal as its sender, then
// stores the mapping and runs done in one transaction. It returns the event
// of the message's last part. Live and backfilled messages both come here,
// so both get the same transaction ids and in-doubt markers.
func (m *Manager) postMessage(ctx context.Context, login *database.Login, p *database.Portal, ev *connector.Event, done func(context.Context) error) (id.EventID, error) {
	return m.postMessageChecked(ctx, login, p, ev, done, false)
}

// postMessageChecked is postMessage; with unlessBridged, the first part's
// send checks that the message is not bridged yet, and a replay of one that
// is only runs done.
func (m *Manager) postMessageChecked(ctx context.Context, login *database.Login, p *database.Portal, ev *connector.Event, done func(context.Context) error, unlessBridged bool) (id.EventID, error) {
	key := p.PortalKey
	intent, isMe, err := m.senderIntent(ctx, login, p, ev.Sender)
	if err != nil {
		return "", err
	}
	contents, textParts, err := m.remoteToMatrix(ctx, intent, p, ev)
	if err != nil {
		return "", err
	}
	if isMe && !intent.IsDoublePuppet() {
		markAsUsers(contents)
	}
	msgs := make([]*database.Message, 0, len(contents))
	txns := make([]string, 0, len(contents))
	for part, content := range contents {
		send := newRemoteSend(intent, p, ev, part, event.EventMessage)
		send.keepEventID = part < len(contents)-1
		send.unlessBridged = unlessBridged && part == 0
		send.send = func(ctx context.Context, txnID string) (*mautrix.RespSendEvent, error) {
			return intent.SendMessageEvent(ctx, p.RoomID, event.EventMessage, sendContent(intent, content, txnID), mautrix.ReqSendEvent{
				Timestamp:     ev.TS,
				TransactionID: txnID,
			})
		}
		eventID, err := m.sendRemote(ctx, send)
		if errors.Is(err, errAlreadyBridged) {
			zerolog.Ctx(ctx).Debug().Msg("Message already bridged, skipping replay")
			return "", done(ctx)
		} else if err != nil {
			return "", fmt.Errorf("send message %s part %d: %w", ev.ID, part, err)
		}
		txns = append(txns, send.txnID)
		msgs = append(msgs, &database.Message{
			PortalKey: key, RemoteID: ev.ID, Part: part, MXID: eventID, RoomID: p.RoomID,
			SenderID: ev.Sender.ID, IsMe: ev.Sender.IsMe, TS: ev.TS,
			// The rest of a long text, which an edit redacts (remoteEdit).
			TextTail: part > 0 && part < textParts,
		})
	}
	// A live message in a busy chat: the markers of the chat's next
	// messages go into this result's transaction (premark.go), and the
	// lane need not wait for its commit (pipeline.go).
	e := entryOf(ctx, ev)
	var pl *pipeline
	var marks []*premark
	if unlessBridged && len(msgs) > 0 {
		if pl = m.pipelineFor(ctx); pl != nil {
			marks = premarksAhead(ctx, pl, p, ev)
		}
	}
	// writtenAt is when the result's write went out (the last try's): the
	// log says it, so that a line written late (the process was paused
	// between the write and the line) can be told from late work.
	var writtenAt time.Time
	var w *groupWrite
	if e != nil && len(msgs) == 1 && m.db.Dialect == dbutil.Postgres {
		// The usual message: its whole result in one statement, with
		// the markers of the chat's next messages.
		var next []*database.InDoubtSend
		if len(marks) > 0 {
			next = make([]*database.InDoubtSend, len(marks))
			for i, mk := range marks {
				next[i] = mk.mark
			}
		}
		result := database.SentResult{Message: msgs[0], TxnID: txns[0], ConnectorID: e.ConnectorID, Seq: e.Seq, Next: next}
		w = m.sentResult(result, &writtenAt, func(written func(string) bool) {
			for _, mk := range marks {
				mk.written = written(mk.mark.TxnID)
			}
		})
	} else {
		w = m.storeSent(msgs, txns, done, marks, &writtenAt)
	}
	for _, mk := range marks {
		mk.write = w
	}
	bridged := func() {
		zerolog.Ctx(ctx).Debug().Str("remote_id", ev.ID).Stringer("room_id", p.RoomID).
			Stringer("event_id", msgs[len(msgs)-1].MXID).Int("parts", len(msgs)).
			Int64("written_at_us", writtenAt.UnixMicro()).Msg("Bridged message to Matrix")
	}
	if pl != nil {
		pl.marks = append(pl.marks, marks...)
	}
	if pl != nil && e != nil && len(pl.marks) > 0 {
		// Logged once the result is stored, by the committer.
		w.then = func(err error) {
			if err == nil {
				bridged()
			}
		}
		// The next message's marker is, or will be, committed before its
		// send: this result's commit need not be waited for here.
		if !m.groupAsync(ctx, w) {
			return "", ctx.Err()
		}
		if !pl.leaveBehind(ctx, w, e) {
			if !w.wait(ctx) {
				return "", ctx.Err()
			}
			err = w.err
		}
	} else {
		err = m.group(ctx, w)
	}
	if err != nil || len(msgs) == 0 {
		return "", err
	}
	m.stats.toMatrix.Add(1)
	if w.then == nil {
		bridged()
	}
	return msgs[len(msgs)-1].MXID, nil
}

// storeSent stores the mappings of a message's sends, runs done and clears
// the sends' markers in one transaction, and writes next's marker in it
// (premarked reports whether it did; writtenAt is when the write began).
func (m *Manager) storeSent(msgs []*database.Message, txns []string, done func(context.Context) error,
	marks []*premark, writtenAt *time.Time) *groupWrite {
	return newGroupWrite(func(ctx context.Context) error {
		*writtenAt = time.Now()
		if err := m.db.InDoubt.Delete(ctx, txns...); err != nil {
			return fmt.Errorf("clear in-doubt markers: %w", err)
		}
		for _, msg := range msgs {
			if err := m.db.Message.Insert(ctx, msg); err != nil {
				return fmt.Errorf("store message mapping: %w", err)
			}
		}
		if err := done(ctx); err != nil {
			return err
		}
		if err := m.writePremarks(ctx, marks); err != nil {
			return fmt.Errorf("mark next sends in doubt: %w", err)
		}
		return nil
	}, false)
}

// recogniseEcho handles a message that carries the txn of a command the
// bridge sent: it is the user's own Matrix message coming back, so it is
// mapped, never posted.
func (m *Manager) recogniseEcho(ctx context.Context, key database.PortalKey, ev *connector.Event, done func(context.Context) error) (bool, error) {
	// The command's result is stored on the room's lane, which does not hold
	// this chat's lock, and it inserts the mapping and deletes the command in
	// one transaction. Looking for the command first and the mapping second
	// means one of the two is always seen; the other order could miss both
	// and post the user's own message back to them.
	var roomID id.RoomID
	pending, err := m.db.PendingCm.Get(ctx, ev.Txn)
	if err != nil {
		return false, err
	} else if pending != nil {
		roomID = pending.RoomID
	} else if mapped, err := m.db.Message.GetByMXID(ctx, id.EventID(ev.Txn)); err != nil {
		return false, err
	} else if mapped != nil {
		if mapped.PortalKey == key {
			return true, done(ctx)
		}
		// Another chat's message: not this one's echo (checked below).
		roomID = mapped.RoomID
	} else if roomID, err = m.db.MXEvent.RoomOf(ctx, id.EventID(ev.Txn)); err != nil {
		return false, err
	} else if roomID == "" {
		return false, nil
	}
	// The txn is the connector's word: it only maps into this chat's own
	// room, never into the room of another login's command or event.
	if p, err := m.db.Portal.Get(ctx, key); err != nil {
		return false, err
	} else if p == nil || p.RoomID != roomID {
		zerolog.Ctx(ctx).Warn().Str("txn", ev.Txn).Msg("Message names a command of another room as its txn, not treating it as an echo")
		return false, nil
	}
	// The echo overtook the command's result: store the mapping now, the
	// result's insert will find it there. A command sent without being
	// stored (sendDirect) is known by its Matrix event, which stays stored
	// (not handled) until the result is, and a day after.
	return true, m.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		err := m.db.Message.Insert(ctx, &database.Message{
			PortalKey: key, RemoteID: ev.ID, MXID: id.EventID(ev.Txn), RoomID: roomID,
			SenderID: ev.Sender.ID, IsMe: true, TS: ev.TS,
		})
		if err != nil {
			return err
		}
		return done(ctx)
	})
}

func (m *Manager) remoteContact(ctx context.Context, connectorID string, ev *connector.Event, done func(context.Context) error) error {
	if ok, err := m.mayChangeContact(ctx, connectorID, ev.Contact.ID); err != nil {
		return err
	} else if !ok {
		zerolog.Ctx(ctx).Warn().Str("contact", ev.Contact.ID).
			Msg("Profile of a contact that only other connectors' users have chats with, skipping it")
		return done(ctx)
	}
	changed, err := m.ghosts.UpdateProfile(ctx, ev.Contact)
	if err != nil {
		return err
	}
	if changed {
		if err = m.syncMemberProfiles(ctx, ev.Contact.ID); err != nil {
			return err
		}
	}
	return done(ctx)
}

func (m *Manager) remoteLoginState(ctx context.Context, login *database.Login, ev *connector.Event, done func(context.Context) error) error {
	var seq int64
	if e := entryOf(ctx, ev); e != nil {
		seq = e.Seq
	}
	if err := m.storeLoginState(ctx, login.ID, ev.State, seq); err != nil {
		return err
	}
	zerolog.Ctx(ctx).Info().Str("state", ev.State).Str("message", ev.Message).Msg("Login state changed")
	signal(m.watch.wake)
	if ev.State == connector.LoginBadCredentials {
		return m.loginGone(ctx, login, ev, done)
	}
	if ev.State == connector.LoginConnected && login.State != connector.LoginConnected {
		// login is the row from before this event. Not only straight from
		// bad_credentials: a disconnected in between must not leave a
		// waiting chat sync for the connector's next connection.
		m.loginBack(ctx, login.ConnectorID, login.ID)
	}
	return done(ctx)
}
