package xmppconnector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
)

// inbound is a one-to-one message on its way to the bridge, wherever it
// came from: live, as a carbon, or out of the archive.
type inbound struct {
	m         *message
	archiveID string // our server's stanza-id for it; "" if it has none
	outgoing  bool   // sent by one of our own clients
	ts        time.Time
	live      bool // arrived just now (typing notices only make sense then)
	archived  bool // an item of the archive catch-up, handled in archive order
}

// handleStanza sorts a live message stanza.
func (a *account) handleStanza(ctx context.Context, conn *xmppConn, m *message) error {
	switch {
	case m.Type == "error":
		a.log.Debug().Str("from", m.From).Str("id", m.ID).Msg("Ignoring a message error")
		return nil
	case m.Type == "groupchat" || m.MUCUser != nil:
		a.log.Debug().Str("from", m.From).Msg("Ignoring a group chat message")
		return nil
	case m.Type == "headline" && m.Event != nil:
		// A PEP notification: a contact's nickname, vCard or avatar changed.
		// Anyone can send a headline, so only the nodes the connector asks
		// for (caps +notify) count, and the refresh is throttled and runs
		// off the worker (see profileFetches); it cannot fail here.
		switch m.Event.Items.Node {
		case nsNick, nsVCard4, nsAvatarMeta:
			if from := bareOf(m.From); from != "" && from != a.login && strings.Contains(from, "@") {
				a.requestProfile(from, true)
			}
		}
		return nil
	case m.Type == "headline":
		return nil
	case m.tooLarge:
		return a.oversizedLive(ctx, conn, m)
	}
	if m.Received != nil || m.Sent != nil {
		// Carbons are only genuine from our own account (mellium empties
		// a from that equals it); anyone else could forge "I sent this".
		if m.From != "" && m.From != a.login {
			a.log.Warn().Str("from", m.From).Msg("Ignoring a carbon that does not come from our account")
			return nil
		}
		c := m.Received
		if c == nil {
			c = m.Sent
		}
		inner := c.Forwarded.Message
		if inner == nil || inner.Type == "groupchat" || inner.MUCUser != nil || inner.Type == "error" {
			return nil
		}
		// The forwarded delay of a genuine carbon is our server's; still
		// no later than now, whatever its clock says.
		ts, ok := c.Forwarded.Delay.time()
		if now := time.Now(); !ok || ts.After(now) {
			ts = now
		}
		return a.bridge(ctx, conn, inbound{m: inner, archiveID: inner.stanzaID(a.login), outgoing: m.Sent != nil, ts: ts, live: true})
	}
	ts, delayed := a.delayTime(m.lastDelay(), m.stored)
	return a.bridge(ctx, conn, inbound{m: m, archiveID: m.stanzaID(a.login), ts: ts, live: !delayed})
}

// delayTime is when a live message was sent: the stamp of its last
// XEP-0203 delay if the message was one our server stored while the
// account was offline (stored: it came in the offline flood, see
// offline.go) and the delay is our server's (or our account's); else, and
// never later than, now. A delay on any other message is the sender's say,
// whatever its from: it put the message years back or ahead in the user's
// timeline, and marked a message that arrived just now as old (no typing
// notice).
func (a *account) delayTime(d *delayEl, stored bool) (time.Time, bool) {
	now := time.Now()
	ts, ok := d.time()
	if !ok || !stored {
		return now, false
	}
	domain := ""
	if j, err := jid.Parse(a.login); err == nil {
		domain = j.Domain().String()
	}
	if d.From == "" || (d.From != domain && d.From != a.login) {
		return now, false
	}
	if ts.After(now) {
		ts = now
	}
	return ts, true
}

// bridge turns one message into events. Each event is stored together
// with the archive item it came from (see effects), so that it is bridged
// exactly once whether it arrives live, as a carbon, from the archive, or
// all three.
func (a *account) bridge(ctx context.Context, conn *xmppConn, in inbound) error {
	m := in.m
	peer := bareOf(m.From)
	if in.outgoing {
		peer = bareOf(m.To)
	}
	// A live stanza never moves the cursor, caught up or not: the archive
	// may hold items this client never got live (sent to another resource
	// with carbons <private/>, or carbons off), and a cursor past them would
	// lose them. It is marked seen, so the next catch-up (at the latest the
	// periodic sweep) skips it and moves the cursor over it.
	eff := &effects{login: a.login, stanzaID: in.archiveID, keepCursor: !in.archived}
	if peer == "" || peer == a.login || !strings.Contains(peer, "@") {
		// Notes to self, and server or component addresses: no DM to bridge.
		return a.skip(ctx, eff)
	}
	if in.archiveID != "" {
		seen, err := a.store.Seen(ctx, a.login, in.archiveID)
		if err != nil || seen {
			return err
		}
	}
	chat := &connector.Chat{ID: peer, Type: connector.ChatTypeDM, With: peer}
	sender := &connector.Sender{ID: peer}
	if in.outgoing {
		sender = &connector.Sender{ID: a.login, IsMe: true}
	}
	if st := m.chatState(); st != "" && in.live && !in.outgoing {
		a.sendTyping(ctx, chat, sender, st == "composing")
	}

	xmppID := m.ID
	originID := ""
	if m.OriginID != nil {
		originID = m.OriginID.ID
		if xmppID == "" {
			xmppID = originID
		}
	}
	id := in.archiveID
	if id == "" {
		id = fitID(xmppID)
	}
	ev := &connector.Event{Login: a.login, TS: in.ts.UnixMilli(), Chat: chat, Sender: sender, ID: id}
	if in.outgoing && originID != "" {
		// One of the bridge's own sends coming back (archive copy): say
		// so with its txn, under the id the command's answer gave it.
		res, _, found, err := a.store.TxnResult(ctx, originID)
		if err != nil {
			return err
		}
		if found {
			ev.Txn = originID
			if res != nil && res.ID != "" {
				ev.ID = res.ID
			}
		}
	}
	if ev.ID == "" {
		if in.outgoing {
			// A carbon of one of the user's own sends: carbons carry no
			// stanza-id even when the server archives the message, so its
			// archive copy (with one) comes at the next catch-up or
			// sweep. A fresh id here would bridge it twice.
			return a.skip(ctx, eff)
		}
		// No stanza-id (the server did not archive it: <no-store/>, archive
		// preferences) and no client id (only RECOMMENDED): skipping it lost
		// the message for good, since no catch-up can bring it back. A fresh
		// id cannot collide with a later archive copy, as there is none; it
		// also stands in as the XMPP id, so no reference maps to "".
		xmppID = newID()
		ev.ID = xmppID
	}

	switch {
	case ev.Txn == "" && (m.Replace != nil || m.Retract != nil):
		// A correction or retraction bridged live without an archive id
		// (the user's own, from another client: carbons carry none) comes
		// again from the archive at the next catch-up or sweep.
		if repeat, err := a.repeatOrOwnID(ctx, peer, xmppID, ev, in); err != nil || repeat {
			if err == nil {
				err = a.skip(ctx, eff)
			}
			return err
		}
	}
	switch {
	case m.Replace != nil || m.Retract != nil:
		// A correction and a retraction both change an earlier message,
		// which must be known and the sender's own; a correction (which
		// wins when a stanza carries both) must also say something.
		target := m.Retract
		ev.Kind = connector.KindDelete
		if m.Replace != nil {
			target, ev.Kind, ev.Text = m.Replace, connector.KindEdit, m.Body
		}
		if ev.Target, _ = a.resolveOwn(ctx, peer, target.ID, sender.ID); ev.Target == "" || (ev.Kind == connector.KindEdit && ev.Text == "") {
			return a.skip(ctx, eff)
		}
		if ok, err := a.authoredBy(ctx, peer, ev.Target, sender.ID); err != nil || !ok {
			if err == nil {
				err = a.skip(ctx, eff)
			}
			return err
		}
		// Remembered, so that the archive copy is recognised
		// (bridgedBefore).
		eff.refs = []msgRef{{chat: peer, bridgeID: ev.ID, xmppID: xmppID, aliases: []string{originID, in.archiveID}, author: sender.ID}}
	case m.Reactions != nil:
		return a.bridgeReactions(ctx, ev, eff, m.Reactions)
	case m.Displayed != nil:
		ev.Kind, ev.ID = connector.KindReadReceipt, ""
		if ev.UpTo, _ = a.resolve(ctx, peer, m.Displayed.ID); ev.UpTo == "" {
			return a.skip(ctx, eff)
		}
	case m.Body != "" || m.OOB != nil:
		if ev.Txn == "" {
			if repeat, err := a.repeatOrOwnID(ctx, peer, xmppID, ev, in); err != nil || repeat {
				if err == nil {
					err = a.skip(ctx, eff)
				}
				return err
			}
		}
		ev.Kind = connector.KindMessage
		ev.Text, ev.Attachments = messageContent(m)
		if m.Reply != nil && m.Reply.ID != "" {
			ev.ReplyTo, _ = a.resolve(ctx, peer, m.Reply.ID)
		}
		eff.refs = []msgRef{{chat: peer, bridgeID: ev.ID, xmppID: xmppID, aliases: []string{originID, in.archiveID}, author: sender.ID}}
	default:
		// Chat states, receipts and the like: nothing durable to bridge.
		return a.skip(ctx, eff)
	}
	// The message waits for a new contact's profile only briefly: that is
	// fetched off the worker, and the bridge names the contact by its id
	// until it comes.
	if err := a.ensureContact(ctx, peer); err != nil {
		return err
	}
	return a.emit(ctx, ev, eff)
}

// bridgedBefore reports whether the stanza with client id xmppID was
// bridged already under another id (say, live without a stanza-id, now
// from the archive). A client id proves nothing when both copies have
// archive ids: contacts' clients and bots reuse ids, and two stanza-ids
// mean two stanzas. So only a copy without an archive id, or a known one
// bridged under its client id (which it was because it had none), counts
// as a repeat. Our own sends always do: the sending side never learns the
// stanza-id (the bridge's derived ids for files and captions are mapped to
// the txn), and our ids are not reused. Either way only a message of the
// same sender is a copy: a contact sending a message under the id of one of
// the user's had it dropped as a repeat.
func (a *account) bridgedBefore(ctx context.Context, peer, xmppID, author string, in inbound) (bool, error) {
	if xmppID == "" {
		return false, nil
	}
	known, found, err := a.store.BridgeID(ctx, a.login, peer, xmppID)
	if err != nil || !found {
		return false, err
	}
	if was, knownAuthor, err := a.store.Author(ctx, a.login, peer, known); err != nil {
		return false, err
	} else if knownAuthor && was != "" && was != author {
		// The first message with the id is another sender's: a copy
		// of this one is the sender's own with it, if there is one.
		if known, found, err = a.store.MessageBy(ctx, a.login, peer, xmppID, author); err != nil || !found {
			return false, err
		}
	}
	return in.archiveID == "" || in.outgoing || known == fitID(xmppID), nil
}

// repeatOrOwnID is bridgedBefore for ev, a message, correction or
// retraction of ev.Sender's with client id xmppID; when it is no repeat
// and is named by its client id (no archive id), it also makes sure that
// id is no other message's. A sender reusing the id of another sender's
// message (a contact reusing one of the user's, as seen on a server
// without an archive) would otherwise reach the bridge under that
// message's id, and the bridge, which deduplicates by (login, chat, id),
// drops it as a replay: ev then gets a fresh id, and its client id stays
// its XMPP id, for the references to it (MessageBy).
func (a *account) repeatOrOwnID(ctx context.Context, peer, xmppID string, ev *connector.Event, in inbound) (bool, error) {
	if repeat, err := a.bridgedBefore(ctx, peer, xmppID, ev.Sender.ID, in); err != nil || repeat {
		return repeat, err
	}
	if in.archiveID != "" || ev.ID != fitID(xmppID) {
		return false, nil
	}
	if _, taken, err := a.store.Author(ctx, a.login, peer, ev.ID); err != nil {
		return false, err
	} else if taken {
		ev.ID = newID()
	}
	return false, nil
}

// authoredBy reports whether the message with bridge id target in chat was
// sent by who. XEP-0308 and XEP-0424 let only a message's sender correct or
// retract it; without this check a contact could name the id of one of the
// user's messages and have the bridge change it. An unknown target is
// refused (nothing the connector bridged); a message stored before authors
// were recorded is left to the bridge's own check.
func (a *account) authoredBy(ctx context.Context, chat, target, who string) (bool, error) {
	author, known, err := a.store.Author(ctx, a.login, chat, target)
	if err != nil {
		return false, err
	}
	if known && (author == who || author == "") {
		return true, nil
	}
	a.log.Warn().Str("chat", chat).Str("target", target).Str("sender", who).Str("author", author).Bool("known", known).
		Msg("Ignoring a correction or retraction of a message its sender did not send")
	return false, nil
}

// maxOwnIDBytes bounds the id a message is bridged under. XMPP sets no
// limit on a client's message id, but the protocol refuses ids over
// connector.MaxIDBytes, and a refused message is lost; reactions add
// "/key" to it. A longer id is bridged under its digest instead: the store
// keeps the client's id beside it (msgRef), so corrections, retractions
// and replies naming the long id still find the message.
const maxOwnIDBytes = 256

// fitID returns id, or a stable digest of it when it is longer than
// maxOwnIDBytes (the same id always gives the same digest, so a repeat is
// still recognised).
func fitID(id string) string {
	if len(id) <= maxOwnIDBytes {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// resolve maps an XMPP-side message id in chat to the bridge's id. An
// unknown id is passed through (fitted as a message's own id is): it may
// be a bridge id already (our own sends use the txn for both).
func (a *account) resolve(ctx context.Context, chat, ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	id, ok, err := a.store.BridgeID(ctx, a.login, chat, ref)
	if err != nil || !ok {
		return fitID(ref), err
	}
	return id, nil
}

// resolveOwn maps the XMPP id a correction or retraction from author
// names to the bridge id of author's latest message with that id (see
// Store.MessageBy); an id none of author's messages has is resolved as
// any reference is.
func (a *account) resolveOwn(ctx context.Context, chat, ref, author string) (string, error) {
	if ref == "" {
		return "", nil
	}
	id, ok, err := a.store.MessageBy(ctx, a.login, chat, ref, author)
	if err != nil || ok {
		return id, err
	}
	return a.resolve(ctx, chat, ref)
}

// maxReactionsPerSender bounds one sender's reaction set on one message.
// XEP-0444 sends the whole set every time, and each new key becomes its
// own Matrix event: without a bound, one stanza of a few hundred kilobytes
// put thousands of reactions on a message (and the distinct check cost
// their count squared). No client lets a person pick anywhere near this
// many; the first ones in the set are kept, and the user is told in the
// chat that the rest were not bridged (reactionStandIn).
const maxReactionsPerSender = 64

// maxReactionKeyBytes bounds one reaction's key; longer ones are left out,
// and the user is told so in the chat (reactionStandIn).
const maxReactionKeyBytes = 256

// toldReactionLeftOut stands in a sender's stored reaction set once the
// user was told that a reaction of the set was left out (too long, or past
// maxReactionsPerSender), so that the next sets (XEP-0444 sends the whole
// set each time) do not tell again.
// It is longer than any key kept, so no reaction can be it, and it is never
// bridged as one.
var toldReactionLeftOut = strings.Repeat("~", maxReactionKeyBytes+1)

// bridgeReactions turns a XEP-0444 reaction set (always the sender's
// complete set) into adds and removes against what the bridge was told.
func (a *account) bridgeReactions(ctx context.Context, base *connector.Event, eff *effects, r *reactionsEl) error {
	target, err := a.resolve(ctx, base.Chat.ID, r.ID)
	if err != nil || target == "" {
		return err
	}
	old, err := a.store.Reactions(ctx, a.login, base.Chat.ID, target, base.Sender.ID)
	if err != nil {
		return err
	}
	tooLong := func(k string) bool {
		// A key is an emoji (XEP-0444); one this long is not, and with
		// the message id it would pass the protocol's id bound.
		return len(k) > maxReactionKeyBytes
	}
	// One key past the bound tells that the set is over it.
	now := firstDistinct(slices.DeleteFunc(slices.Clone(r.Reactions), tooLong), maxReactionsPerSender+1)
	tooMany := len(now) > maxReactionsPerSender
	if tooMany {
		now = now[:maxReactionsPerSender]
		a.log.Warn().Str("chat_id", base.Chat.ID).Int("reactions", len(r.Reactions)).
			Msg("Keeping only the first reactions of an oversized set")
	}
	keys := now
	long := slices.ContainsFunc(r.Reactions, tooLong)
	if long || tooMany {
		keys = append(slices.Clone(now), toldReactionLeftOut)
	}
	eff.reactions = &reactionSet{chat: base.Chat.ID, target: target, sender: base.Sender.ID, keys: keys}
	var evs []*connector.Event
	if (long || tooMany) && !contains(old, toldReactionLeftOut) {
		// The user is told once, not at every set that still has it.
		evs = append(evs, reactionStandIn(base, target, long))
	}
	for _, k := range now {
		if !contains(old, k) {
			ev := *base
			ev.Kind, ev.Target, ev.Key, ev.ID = connector.KindReaction, target, k, base.ID+"/"+k
			evs = append(evs, &ev)
		}
	}
	for _, k := range old {
		if !contains(now, k) && k != toldReactionLeftOut {
			ev := *base
			ev.Kind, ev.Target, ev.Key, ev.ID = connector.KindReactionRemove, target, k, base.ID+"/-"+k
			evs = append(evs, &ev)
		}
	}
	if len(evs) == 0 {
		return a.skip(ctx, eff)
	}
	for i, ev := range evs {
		// The state change rides on the last event: a crash in between
		// replays the whole set, and the bridge drops the repeats by id.
		var e *effects
		if i == len(evs)-1 {
			e = eff
		}
		if err := a.emit(ctx, ev, e); err != nil {
			return err
		}
	}
	return nil
}

// emit hands an event to the SDK, which stores it (with eff) before
// returning. An event the SDK refuses as invalid or too large would be
// refused forever (and stop every catch-up at it), so its archive item is
// marked handled rather than retried. A message refused so is not left
// unsaid: a stand-in goes in its place (see oversized.go). Text under
// xmpp.max_stanza_size can still make an event over the bridge's frame:
// JSON writes each '<', '>' and '&' in six bytes, so 200 KiB of '>' (one
// byte each in XML, under Prosody's 256 KiB) is a 1.2 MiB event.
func (a *account) emit(ctx context.Context, ev *connector.Event, eff *effects) error {
	sctx := ctx
	if eff != nil {
		sctx = withEffects(ctx, eff)
	}
	_, err := a.events.Send(sctx, ev)
	if refused(err) && (ev.Kind == connector.KindMessage || ev.Kind == connector.KindEdit) {
		// The user is told in the chat rather than left with silence.
		a.log.Error().Err(err).Str("id", ev.ID).Str("kind", ev.Kind).Msg("The SDK refuses an event; bridging a stand-in")
		standIn := refusedStandIn(ev)
		if ev.Kind == connector.KindEdit {
			standIn = refusedEditStandIn(ev)
		}
		_, err = a.events.Send(sctx, standIn)
	}
	if refused(err) {
		a.log.Error().Err(err).Str("kind", ev.Kind).Msg("Dropping an event the SDK refuses")
		return a.skip(ctx, eff)
	}
	if err != nil {
		return fmt.Errorf("queueing %s event: %w", ev.Kind, err)
	}
	return nil
}

// refused reports whether the SDK refused an event for good: invalid, or
// too large for a frame.
func refused(err error) bool {
	var verr *connector.ValidationError
	return errors.As(err, &verr) || errors.Is(err, sdk.ErrEventTooLarge)
}

// skip commits eff's bookkeeping for a stanza that produces no event.
func (a *account) skip(ctx context.Context, eff *effects) error {
	if eff == nil || (eff.stanzaID == "" && eff.reactions == nil && len(eff.refs) == 0) {
		return nil
	}
	return a.store.Apply(ctx, eff)
}

func (a *account) sendTyping(ctx context.Context, chat *connector.Chat, sender *connector.Sender, typing bool) {
	e := &connector.Ephemeral{Kind: connector.KindTyping, Login: a.login, Chat: chat, Sender: sender, Typing: typing}
	if typing {
		// XEP-0085 has no expiry; paused or active ends it, and a client
		// that vanished mid-sentence should not type forever.
		e.TimeoutMS = 30_000
	}
	if err := a.events.SendEphemeral(ctx, e); err != nil {
		a.log.Debug().Err(err).Msg("Could not send typing notice")
	}
}
