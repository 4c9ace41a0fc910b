package appservice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/exhttp"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
)

// maxTransactionBytes bounds what one transaction may weigh; homeservers send
// at most a few hundred events per transaction.
const maxTransactionBytes = 64 << 20

// rawTransaction keeps each event as it came, so that the stored copy is the
// homeserver's own JSON.
type rawTransaction struct {
	Events                 []json.RawMessage `json:"events"`
	EphemeralEvents        []json.RawMessage `json:"ephemeral"`
	MSC2409EphemeralEvents []json.RawMessage `json:"de.sorunome.msc2409.ephemeral"`
	// The encryption fields stay raw here: a malformed one must not make
	// the whole transaction invalid JSON to the intake.
	rawCryptoFields
}

// EventHead is the part of an event's JSON that says what it is, where and
// from whom, read without decoding its content.
type EventHead struct {
	ID       id.EventID `json:"event_id"`
	RoomID   id.RoomID  `json:"room_id"`
	Type     string     `json:"type"`
	Sender   id.UserID  `json:"sender"`
	StateKey *string    `json:"state_key"`
}

// ownEcho reports whether an event is one the bridge sent itself (as a
// ghost or the bot) and not a state event, whose changes the state store
// must see. The homeserver pushes back every event the bridge sends, so on
// a real homeserver each bridged message comes back as one of these; there
// is nothing to do for it, so it is not stored at all, and a transaction of
// nothing else costs no database transaction.
func (l *Link) ownEcho(h *EventHead) bool {
	if h.StateKey != nil || h.Sender == "" {
		return false
	}
	if h.Sender == l.BotMXID() {
		return true
	}
	_, ghost := l.cfg.ParseGhostUserID(h.Sender)
	return ghost
}

// putTransaction stores the transaction id and its events in one database
// transaction before answering 200, so a crash loses nothing: the homeserver
// retries until it gets the 200, and a repeat is recognised by its id.
func (l *Link) putTransaction(w http.ResponseWriter, r *http.Request) {
	if !l.checkHSToken(w, r) {
		return
	}
	txnID := r.PathValue("txnID")
	log := l.log.With().Str("transaction_id", txnID).Logger()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxTransactionBytes+1))
	if err != nil || len(body) == 0 || len(body) > maxTransactionBytes {
		log.Warn().Err(err).Int("bytes", len(body)).Msg("Refused a transaction: missing, unreadable or oversized body")
		mautrix.MNotJSON.WithMessage("Missing, unreadable or oversized request body").Write(w)
		return
	}
	var txn rawTransaction
	if err = json.Unmarshal(body, &txn); err != nil {
		log.Warn().Err(err).Msg("Refused a transaction that is not valid JSON")
		mautrix.MBadJSON.WithMessage("Transaction is not valid JSON: " + err.Error()).Write(w)
		return
	}
	// A malformed event is stored as parked and skipped, not refused: the
	// homeserver would resend the whole transaction forever, and every good
	// event in it (and behind it) would be stuck.
	heads := make([]EventHead, len(txn.Events))
	var malformed []int
	for i, raw := range txn.Events {
		if err = json.Unmarshal(raw, &heads[i]); err != nil || heads[i].ID == "" || heads[i].RoomID == "" {
			log.Warn().Int("index", i).Msg("Skipping malformed event in transaction: not an object with event_id and room_id")
			malformed = append(malformed, i)
		}
	}
	events := make([]*database.NewMXEvent, 0, len(txn.Events))
	for i, raw := range txn.Events {
		if heads[i].ID != "" && heads[i].RoomID != "" && !l.ownEcho(&heads[i]) {
			events = append(events, &database.NewMXEvent{EventID: heads[i].ID, RoomID: heads[i].RoomID, Data: raw})
		}
	}
	ephemeral := txn.EphemeralEvents
	if ephemeral == nil {
		ephemeral = txn.MSC2409EphemeralEvents
	}
	// Only the ephemeral events' handover needs the transaction id
	// remembered: a repeat of one holding nothing else changes nothing.
	// With high availability the transaction is what checks the lease's
	// epoch, so a resumed former active answers nothing but an error; and
	// encryption data is acknowledged only after a commit, as before.
	store := len(events) > 0 || len(malformed) > 0 || len(ephemeral) > 0 || l.db.Fenced
	ctx := log.WithContext(context.Background())
	fresh, added := false, 0
	var writtenAt time.Time
	// Homeservers send one transaction at a time, but a retry can overlap a
	// slow first attempt. Serialising the intake keeps mx_event's seq in
	// commit order, which the dispatcher relies on to never skip a row.
	l.intakeMu.Lock()
	defer l.intakeMu.Unlock()
	if l.crypto != nil && l.handleCryptoPush(ctx, log, &txn.rawCryptoFields) {
		store = true
	}
	if store {
		if fresh, added, writtenAt, err = l.storeTransaction(ctx, txnID, txn.Events, malformed, events); err != nil {
			log.Err(err).Msg("Failed to store transaction")
			mautrix.MUnknown.WithMessage("Failed to store transaction").WithStatus(http.StatusInternalServerError).Write(w)
			return
		}
	}
	if l.gate != nil {
		if err = l.gate(); err != nil {
			// Not even an error answer: this process may not act any more.
			// The homeserver sees the connection drop and retries.
			log.Warn().Err(err).Msg("Stored a transaction but may not acknowledge it; dropping the connection")
			panic(http.ErrAbortHandler)
		}
	}
	exhttp.WriteEmptyJSONResponse(w, http.StatusOK)
	// written_at_us dates the writes: the HA pause test tells a transaction
	// written before the pause (and so committed before the takeover, or
	// failed) from one of a resumed former active.
	log.Debug().Bool("seen_before", !fresh).Int("events", len(txn.Events)).Int("new_events", added).
		Int64("written_at_us", writtenAt.UnixMicro()).Msg("Stored transaction")
	if l.sink == nil {
		return
	}
	if added > 0 {
		l.sink.Wake()
	}
	if !fresh {
		// Ephemeral events of a repeated transaction were handed over already.
		return
	}
	for _, raw := range ephemeral {
		evt, err := parseEphemeral(raw)
		if err != nil {
			log.Warn().Err(err).Msg("Skipping unparsable ephemeral event")
			continue
		}
		l.sink.MatrixEphemeral(ctx, evt)
	}
}

// storeTransaction stores the transaction id, its malformed events as
// parked and its events in one database transaction; fresh is false for
// an id seen before, added counts the events not seen before, writtenAt is
// when the last write went out (before the commit).
func (l *Link) storeTransaction(ctx context.Context, txnID string, raw []json.RawMessage, malformed []int,
	events []*database.NewMXEvent) (fresh bool, added int, writtenAt time.Time, err error) {
	err = l.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		fresh, err = l.db.ASTxn.Insert(ctx, txnID)
		if err != nil {
			return err
		}
		// Events are stored even for a transaction id seen before: Dendrite
		// names a retried batch after its first event, and the retry can
		// carry events that arrived meanwhile. Event ids keep it once.
		for _, i := range malformed {
			if err := l.db.MXEvent.InsertParked(ctx, malformedID(raw[i]), raw[i],
				"malformed event: not an object with event_id and room_id"); err != nil {
				return fmt.Errorf("store malformed event %d: %w", i, err)
			}
		}
		added, err = l.db.MXEvent.InsertMany(ctx, events)
		if err != nil {
			return fmt.Errorf("store %d events: %w", len(events), err)
		}
		writtenAt = time.Now()
		return nil
	})
	return fresh, added, writtenAt, err
}

// handleCryptoPush hands the transaction's encryption data, if it has any
// (had), to the e2ee manager before the transaction is stored and
// acknowledged, and waits for it. A room key that arrives by to-device
// message is then in the crypto store before the homeserver hears 200, so a
// crash after the 200 loses none; a crash before it makes the homeserver
// resend the transaction, and the repeat is handled again (hence also for a
// transaction id seen before), which the Olm machine recognises by the
// message's hash. Storing the to-device events and handling them later would
// need a second durable queue for what is already durable at the homeserver
// until the 200. It also comes before the timeline events are stored, so a
// message encrypted with a key sent in the same transaction finds the key.
func (l *Link) handleCryptoPush(ctx context.Context, log zerolog.Logger, raw *rawCryptoFields) (had bool) {
	push := raw.parse(log)
	if push.Empty() {
		return false
	}
	// Bounded, so that a homeserver that hangs on a key query cannot stall
	// the intake for good; the homeserver itself waits about a minute.
	ctx, cancel := context.WithTimeout(ctx, pushHandlingTimeout)
	defer cancel()
	l.crypto.HandleCryptoPush(ctx, push)
	return true
}

// pushHandlingTimeout bounds the handling of one transaction's encryption data.
const pushHandlingTimeout = 45 * time.Second

// malformedID names a malformed event by its content, so that a repeated
// transaction stores it once.
func malformedID(raw json.RawMessage) id.EventID {
	sum := sha256.Sum256(raw)
	return id.EventID("malformed:" + hex.EncodeToString(sum[:16]))
}

// EphemeralEvent is an ephemeral event as an appservice receives it: unlike in
// /sync, it names its room.
type EphemeralEvent struct {
	*event.Event
}

func parseEphemeral(raw json.RawMessage) (*EphemeralEvent, error) {
	var evt event.Event
	if err := json.Unmarshal(raw, &evt); err != nil {
		return nil, err
	}
	evt.Type.Class = event.EphemeralEventType
	evt.Mautrix.EventSource = event.SourceEphemeral
	if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrUnsupportedContentType) {
		return nil, err
	}
	return &EphemeralEvent{&evt}, nil
}

// ParseEvent turns a stored Matrix event back into a parsed event.
func ParseEvent(data []byte) (*event.Event, error) {
	var evt event.Event
	if err := json.Unmarshal(data, &evt); err != nil {
		return nil, fmt.Errorf("parse stored event: %w", err)
	}
	if evt.StateKey != nil {
		evt.Type.Class = event.StateEventType
	} else {
		evt.Type.Class = event.MessageEventType
	}
	evt.Mautrix.EventSource = event.SourceTimeline
	evt.Mautrix.ReceivedAt = time.Now()
	if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrUnsupportedContentType) {
		return &evt, fmt.Errorf("parse content of %s: %w", evt.ID, err)
	}
	return &evt, nil
}
