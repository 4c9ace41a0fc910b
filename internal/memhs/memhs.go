// Package memhs is a minimal in-memory Matrix homeserver for benchmarks.
//
// It answers the client-server calls the bridge makes (versions, register,
// whoami, login, profile, end-to-end keys, createRoom, join, invite, leave,
// send with idempotent transaction ids, state, messages, members, account
// data, typing, receipts, redactions) with the shapes a real homeserver gives, so
// that a benchmark measures the bridge's own cost and not the homeserver's.
// It authorises any token: it is for loopback benchmarks only, never a test
// of the bridge's behaviour towards a real homeserver (the end-to-end tests
// on Dendrite are that). It never pushes transactions to the appservice;
// a benchmark that needs Matrix→remote traffic pushes them itself.
package memhs

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// Event is a room event as the homeserver stores and returns it.
type Event struct {
	Type     string          `json:"type"`
	StateKey *string         `json:"state_key,omitempty"`
	Sender   string          `json:"sender"`
	Content  json.RawMessage `json:"content"`
	ID       string          `json:"event_id"`
	RoomID   string          `json:"room_id"`
	TS       int64           `json:"origin_server_ts"`
}

// Sent is what a send hook sees of one new timeline event.
type Sent struct {
	RoomID, Sender, Type string
	Content              json.RawMessage
	At                   time.Time
}

type user struct {
	displayname, avatar string
	accountData         map[string]json.RawMessage
	// joined is the rooms the user is joined to, kept with each member
	// event: a profile change and /joined_rooms visit only these, as a real
	// homeserver's index does, so that the stand-in's cost per call does not
	// grow with the number of rooms it holds (with a scan of every room, a
	// 100,000-portal benchmark measured the stand-in, not the bridge).
	joined map[string]struct{}
}

type room struct {
	state    map[string]*Event // type + "\x00" + state_key
	members  map[string]string // user id -> membership
	timeline []*Event
}

// Server is the in-memory homeserver.
type Server struct {
	Domain string
	URL    string
	srv    *httptest.Server

	// OnSend, if set before traffic starts, is called (without the lock)
	// for every new m.room.message-like event sent through /send.
	OnSend func(Sent)

	mu     sync.Mutex
	users  map[string]*user
	rooms  map[string]*room
	txns   map[string]string // sender + "|" + txn id -> event id
	tokens map[string]string // access token -> user id
	calls  map[string]int
	total  int
	unknow []string
	seq    int
	keys   keyStore
}

// Start starts a homeserver for domain on a loopback port; Close stops it.
func Start(domain string) *Server {
	s := &Server{
		Domain: domain,
		users:  map[string]*user{}, rooms: map[string]*room{},
		txns: map[string]string{}, tokens: map[string]string{}, calls: map[string]int{},
		keys: newKeyStore(),
	}
	s.srv = httptest.NewServer(s.routes())
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// AddToken makes token act as userID when a request names no user_id (as
// an appservice's as_token acts as its sender_localpart).
func (s *Server) AddToken(token, userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = userID
	s.ensureUser(userID)
}

// CreateUser registers a user, as an operator's existing account.
func (s *Server) CreateUser(localpart string) string {
	uid := "@" + localpart + ":" + s.Domain
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ensureUser(uid)
	return uid
}

// Calls returns the number of requests per endpoint ("PUT /rooms/send")
// and in total since the last call to Calls.
func (s *Server) Calls() (map[string]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, n := s.calls, s.total
	s.calls, s.total = map[string]int{}, 0
	return out, n
}

// Unknown returns the requests no route answered (each got M_UNRECOGNIZED).
func (s *Server) Unknown() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.unknow...)
}

// Timeline returns the events of a room in order.
func (s *Server) Timeline(roomID string) []*Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil {
		return nil
	}
	return append([]*Event(nil), r.timeline...)
}

// AccountData returns a user's account data of a type, or nil.
func (s *Server) AccountData(userID, typ string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[userID]; u != nil {
		return u.accountData[typ]
	}
	return nil
}

func (s *Server) ensureUser(uid string) *user {
	u := s.users[uid]
	if u == nil {
		u = &user{accountData: map[string]json.RawMessage{}, joined: map[string]struct{}{}}
		s.users[uid] = u
	}
	return u
}

func (s *Server) newID(sigil string) string {
	s.seq++
	var b [12]byte
	_, _ = rand.Read(b[:])
	return sigil + base64.RawURLEncoding.EncodeToString(b[:]) + strconv.Itoa(s.seq)
}

// appendEvent adds an event to a room's timeline (and state, for a state
// event). Lock held.
func (s *Server) appendEvent(r *room, roomID, sender, typ string, stateKey *string, content json.RawMessage, ts int64) *Event {
	if ts == 0 {
		ts = time.Now().UnixMilli()
	}
	ev := &Event{Type: typ, StateKey: stateKey, Sender: sender, Content: content, ID: s.newID("$"), RoomID: roomID, TS: ts}
	r.timeline = append(r.timeline, ev)
	if stateKey != nil {
		r.state[typ+"\x00"+*stateKey] = ev
		if typ == "m.room.member" {
			var m struct {
				Membership string `json:"membership"`
			}
			_ = json.Unmarshal(content, &m)
			r.members[*stateKey] = m.Membership
			if m.Membership == "join" {
				s.ensureUser(*stateKey).joined[roomID] = struct{}{}
			} else {
				delete(s.ensureUser(*stateKey).joined, roomID)
			}
		}
	}
	return ev
}

func (s *Server) member(r *room, roomID, sender, target, membership string) *Event {
	u := s.ensureUser(target)
	c := map[string]any{"membership": membership}
	if u.displayname != "" {
		c["displayname"] = u.displayname
	}
	if u.avatar != "" {
		c["avatar_url"] = u.avatar
	}
	raw, _ := json.Marshal(c)
	key := target
	return s.appendEvent(r, roomID, sender, "m.room.member", &key, raw, 0)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, errcode, msg string) {
	writeJSON(w, code, map[string]string{"errcode": errcode, "error": msg})
}

// caller is the user a request acts as: ?user_id (appservice masquerading)
// or the token's user.
func (s *Server) caller(r *http.Request) string {
	if uid := r.URL.Query().Get("user_id"); uid != "" {
		return uid
	}
	return s.tokens[bearer(r)]
}

// count records a call under its endpoint, with ids left out.
func (s *Server) count(r *http.Request, endpoint string) {
	s.calls[r.Method+" "+endpoint]++
	s.total++
}

func (s *Server) fmtMember(roomID string, r *room) map[string]any {
	joined := map[string]any{}
	for uid, m := range r.members {
		if m == "join" {
			u := s.users[uid]
			joined[uid] = map[string]string{"display_name": u.displayname, "avatar_url": u.avatar}
		}
	}
	return map[string]any{"joined": joined}
}
