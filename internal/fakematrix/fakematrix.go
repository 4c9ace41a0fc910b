// Package fakematrix is a recording, in-memory stand-in for the homeserver
// behind matrix.Intents, for fast unit tests of the bridge's decisions. It
// keeps just enough state to answer what the bridge reads back (room state
// and members, joined rooms, account data, uploaded media, the timeline)
// and records every call, so that a test asserts what the bridge did on
// Matrix without Dendrite. It is not a homeserver: it checks no power
// levels, and it answers a send from a user who is not in the room.
package fakematrix

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/matrix"
)

// Call is one recorded call on some user's API.
type Call struct {
	User      id.UserID
	Method    string
	RoomID    id.RoomID
	EventType event.Type
	StateKey  string
	// EventID is the event a redaction or receipt points at, or the event a
	// send created.
	EventID id.EventID
	TxnID   string
	// Content is the content as the bridge passed it, turned into JSON and
	// back so tests can read fields without knowing the Go type.
	Content map[string]any
	// Target is the user an invite, a profile read or a membership is for.
	Target id.UserID
}

// Homeserver is the fake; it implements matrix.Intents.
type Homeserver struct {
	// Domain is the server name in generated ids.
	Domain string
	// Bot is the bridge bot's user id.
	BotID id.UserID
	// Fail, if set, is asked before every call is applied; an error it
	// returns is the call's answer (and the call is still recorded).
	Fail func(c Call) error
	// Clobber, if set, runs after every account data write, standing in for
	// a client writing concurrently.
	Clobber func(user id.UserID, eventType string, data map[string]json.RawMessage) map[string]json.RawMessage

	mu          sync.Mutex
	calls       []Call
	seq         int
	state       map[id.RoomID]map[string]json.RawMessage // "type\x00key" -> content
	timeline    map[id.RoomID][]json.RawMessage
	accountData map[id.UserID]map[string]json.RawMessage
	media       map[string][]byte
	registered  map[id.UserID]bool
	profiles    map[id.UserID]*mautrix.RespUserProfile
	// sent maps "user\x00txn" to the event a send with that transaction id
	// created: as a homeserver does, a repeated transaction id is answered
	// with the first event, and nothing new goes into the room.
	sent map[string]id.EventID
}

// New returns an empty fake homeserver for domain, whose bot is botID.
func New(domain string, botID id.UserID) *Homeserver {
	return &Homeserver{
		Domain: domain, BotID: botID,
		state:       make(map[id.RoomID]map[string]json.RawMessage),
		timeline:    make(map[id.RoomID][]json.RawMessage),
		accountData: make(map[id.UserID]map[string]json.RawMessage),
		media:       make(map[string][]byte),
		registered:  make(map[id.UserID]bool),
		profiles:    make(map[id.UserID]*mautrix.RespUserProfile),
		sent:        make(map[string]id.EventID),
	}
}

var _ matrix.Intents = (*Homeserver)(nil)

// SetGhostHook does nothing: the fake has no mautrix intents.
func (h *Homeserver) SetGhostHook(func(*mas.IntentAPI)) {}

// SetDoublePuppetHook does nothing: the fake has no mautrix intents.
func (h *Homeserver) SetDoublePuppetHook(func(*mas.IntentAPI)) {}

// Bot implements matrix.Intents.
func (hs *Homeserver) Bot() matrix.API { return &User{hs: hs, id: hs.BotID} }

// Ghost implements matrix.Intents.
func (hs *Homeserver) Ghost(userID id.UserID, _ bool) matrix.API { return &User{hs: hs, id: userID} }

// RegisterGhost implements matrix.Intents.
func (hs *Homeserver) RegisterGhost(ctx context.Context, userID id.UserID) error {
	return hs.apply(Call{User: userID, Method: "RegisterGhost"}, func() error {
		hs.registered[userID] = true
		return nil
	})
}

// DoublePuppet implements matrix.Intents.
func (hs *Homeserver) DoublePuppet(userID id.UserID, _ string) (matrix.API, error) {
	return &User{hs: hs, id: userID, puppet: true}, nil
}

// Calls returns the calls recorded so far, optionally only those of the
// given methods.
func (hs *Homeserver) Calls(methods ...string) []Call {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var out []Call
	for _, c := range hs.calls {
		if len(methods) == 0 || contains(methods, c.Method) {
			out = append(out, c)
		}
	}
	return out
}

// Reset forgets the recorded calls (not the state).
func (hs *Homeserver) Reset() {
	hs.mu.Lock()
	hs.calls = nil
	hs.mu.Unlock()
}

// ForgetTransactions forgets which events the transaction ids sent so far
// created, as a homeserver does after a restart or once its transaction
// cache expired (Dendrite's keeps them for half an hour): a repeated id
// then creates a new event.
func (hs *Homeserver) ForgetTransactions() {
	hs.mu.Lock()
	clear(hs.sent)
	hs.mu.Unlock()
}

// Registered reports whether a user was registered.
func (hs *Homeserver) Registered(userID id.UserID) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.registered[userID]
}

// SetState puts a state event into a room, as if someone had sent it.
func (hs *Homeserver) SetState(roomID id.RoomID, evtType event.Type, stateKey string, content any) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.putState(roomID, evtType, stateKey, content)
}

// Membership is a user's membership in a room ("" if none).
func (hs *Homeserver) Membership(roomID id.RoomID, userID id.UserID) event.Membership {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var m event.MemberEventContent
	if raw, ok := hs.state[roomID][stateKey(event.StateMember, string(userID))]; ok {
		_ = json.Unmarshal(raw, &m)
	}
	return m.Membership
}

// SetTimeline sets what Messages and EventsAfter answer for a room: raw
// events, oldest first.
func (hs *Homeserver) SetTimeline(roomID id.RoomID, events ...any) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.timeline[roomID] = nil
	for _, e := range events {
		data, _ := json.Marshal(e)
		hs.timeline[roomID] = append(hs.timeline[roomID], data)
	}
}

// Timeline returns a room's events, oldest first: those SetTimeline put
// there and those sent since.
func (hs *Homeserver) Timeline(roomID id.RoomID) []json.RawMessage {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return slices.Clone(hs.timeline[roomID])
}

// AccountData returns a user's account data of one type (nil if none).
func (hs *Homeserver) AccountData(userID id.UserID, eventType string) json.RawMessage {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.accountData[userID][eventType]
}

// SetAccountData puts account data, as if a client had written it.
func (hs *Homeserver) SetAccountData(userID id.UserID, eventType string, data any) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	raw, _ := json.Marshal(data)
	if hs.accountData[userID] == nil {
		hs.accountData[userID] = make(map[string]json.RawMessage)
	}
	hs.accountData[userID][eventType] = raw
}

// SetProfile sets what GetProfile answers for a user.
func (hs *Homeserver) SetProfile(userID id.UserID, p *mautrix.RespUserProfile) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.profiles[userID] = p
}

// Media returns uploaded bytes by mxc URI.
func (hs *Homeserver) Media(uri string) ([]byte, bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	data, ok := hs.media[uri]
	return data, ok
}

// apply records c, asks Fail, and runs f under the lock.
func (hs *Homeserver) apply(c Call, f func() error) error {
	hs.mu.Lock()
	hs.calls = append(hs.calls, c)
	idx := len(hs.calls) - 1
	fail := hs.Fail
	hs.mu.Unlock()
	if fail != nil {
		if err := fail(c); err != nil {
			return err
		}
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	err := f()
	// f may have learnt the event id; keep it in the record.
	if hs.calls[idx].EventID == "" && c.EventID != "" {
		hs.calls[idx].EventID = c.EventID
	}
	return err
}

func (hs *Homeserver) nextID(prefix byte) string {
	hs.seq++
	return fmt.Sprintf("%c%d:%s", prefix, hs.seq, hs.Domain)
}

func (hs *Homeserver) putState(roomID id.RoomID, evtType event.Type, key string, content any) {
	if hs.state[roomID] == nil {
		hs.state[roomID] = make(map[string]json.RawMessage)
	}
	raw, _ := json.Marshal(content)
	hs.state[roomID][stateKey(evtType, key)] = raw
}

func stateKey(t event.Type, key string) string { return t.Type + "\x00" + key }

// NotFound is the error the fake answers for missing state, account data
// and media, shaped like the homeserver's (errors.Is mautrix.MNotFound).
func NotFound(what string) error {
	return mautrix.HTTPError{
		Request:   &http.Request{Method: http.MethodGet},
		Response:  &http.Response{StatusCode: http.StatusNotFound},
		RespError: &mautrix.RespError{ErrCode: mautrix.MNotFound.ErrCode, Err: what + " not found", StatusCode: http.StatusNotFound},
	}
}

// Forbidden is a 403 refusal, shaped like the homeserver's.
func Forbidden(why string) error {
	return mautrix.HTTPError{
		Request:   &http.Request{Method: http.MethodPut},
		Response:  &http.Response{StatusCode: http.StatusForbidden},
		RespError: &mautrix.RespError{ErrCode: mautrix.MForbidden.ErrCode, Err: why, StatusCode: http.StatusForbidden},
	}
}

func toMap(v any) map[string]any {
	if v == nil {
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return map[string]any{"unencodable": err.Error()}
	}
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
