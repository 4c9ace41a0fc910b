package memhs

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// handler answers one endpoint with the lock held; it returns the status
// and the JSON body.
type handler func(r *http.Request, body []byte, me string) (int, any)

// roomHandler answers an endpoint about the room in the path, which exists.
type roomHandler func(r *http.Request, body []byte, me, roomID string, rm *room) (int, any)

// inRoom answers M_NOT_FOUND for a room memhs does not know, as a
// homeserver does before it looks at anything else, and runs h otherwise.
func (s *Server) inRoom(h roomHandler) handler {
	return func(r *http.Request, body []byte, me string) (int, any) {
		roomID := r.PathValue("room")
		rm := s.rooms[roomID]
		if rm == nil {
			return 404, mxErr("M_NOT_FOUND", "unknown room")
		}
		return h(r, body, me, roomID, rm)
	}
}

const cs = "/_matrix/client/v3"

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	add := func(pattern, endpoint string, h handler) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" "+path, func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			var sent *Sent
			s.mu.Lock()
			s.count(r, endpoint)
			code, out := h(r, body, s.caller(r))
			if sn, ok := out.(sentReply); ok {
				sent, out = sn.sent, sn.reply
			}
			hook := s.OnSend
			s.mu.Unlock()
			if sent != nil && hook != nil {
				hook(*sent)
			}
			writeJSON(w, code, out)
		})
	}
	add("GET /_matrix/client/versions", "/versions", func(*http.Request, []byte, string) (int, any) {
		return 200, map[string]any{"versions": []string{"r0.6.1", "v1.1", "v1.2"}, "unstable_features": map[string]bool{}}
	})
	add("GET /_matrix/media/v3/config", "/media/config", func(*http.Request, []byte, string) (int, any) {
		return 200, map[string]any{"m.upload.size": 100 << 20}
	})
	add("POST "+cs+"/register", "/register", s.register)
	add("POST "+cs+"/login", "/login", s.login)
	add("GET "+cs+"/account/whoami", "/whoami", func(_ *http.Request, _ []byte, me string) (int, any) {
		if me == "" {
			return 401, mxErr("M_UNKNOWN_TOKEN", "unknown token")
		}
		return 200, map[string]string{"user_id": me, "device_id": "MEMHS"}
	})
	add("GET "+cs+"/profile/{user}", "/profile", s.getProfile(""))
	add("GET "+cs+"/profile/{user}/displayname", "/profile/displayname", s.getProfile("displayname"))
	add("GET "+cs+"/profile/{user}/avatar_url", "/profile/avatar_url", s.getProfile("avatar_url"))
	add("PUT "+cs+"/profile/{user}/displayname", "/profile/displayname", s.setProfile("displayname"))
	add("PUT "+cs+"/profile/{user}/avatar_url", "/profile/avatar_url", s.setProfile("avatar_url"))
	add("POST "+cs+"/createRoom", "/createRoom", s.createRoom)
	add("POST "+cs+"/rooms/{room}/join", "/rooms/join", s.inRoom(s.membership("join")))
	add("POST "+cs+"/join/{room}", "/join", s.inRoom(s.membership("join")))
	add("POST "+cs+"/rooms/{room}/leave", "/rooms/leave", s.inRoom(s.membership("leave")))
	add("POST "+cs+"/rooms/{room}/invite", "/rooms/invite", s.inRoom(s.membership("invite")))
	add("POST "+cs+"/rooms/{room}/kick", "/rooms/kick", s.inRoom(s.membership("leave")))
	add("PUT "+cs+"/rooms/{room}/send/{type}/{txn}", "/rooms/send", s.inRoom(s.send))
	add("PUT "+cs+"/rooms/{room}/redact/{event}/{txn}", "/rooms/redact", s.inRoom(s.redact))
	add("PUT "+cs+"/rooms/{room}/state/{type}", "/rooms/state", s.inRoom(s.putState))
	add("PUT "+cs+"/rooms/{room}/state/{type}/{key...}", "/rooms/state", s.inRoom(s.putState))
	add("GET "+cs+"/rooms/{room}/state/{type}", "/rooms/state", s.inRoom(s.getState))
	add("GET "+cs+"/rooms/{room}/state/{type}/{key...}", "/rooms/state", s.inRoom(s.getState))
	add("GET "+cs+"/rooms/{room}/state", "/rooms/state", s.inRoom(s.fullState))
	add("GET "+cs+"/rooms/{room}/messages", "/rooms/messages", s.inRoom(s.messages))
	add("GET "+cs+"/rooms/{room}/joined_members", "/rooms/joined_members", s.inRoom(s.joinedMembers))
	add("GET "+cs+"/rooms/{room}/members", "/rooms/members", s.inRoom(s.members))
	add("GET "+cs+"/joined_rooms", "/joined_rooms", s.joinedRooms)
	add("GET "+cs+"/user/{user}/account_data/{type}", "/account_data", s.getAccountData)
	add("PUT "+cs+"/user/{user}/account_data/{type}", "/account_data", s.putAccountData)
	s.addKeyRoutes(add)
	ok := func(*http.Request, []byte, string) (int, any) { return 200, struct{}{} }
	add("PUT "+cs+"/rooms/{room}/typing/{user}", "/rooms/typing", ok)
	add("POST "+cs+"/rooms/{room}/receipt/{type}/{event}", "/rooms/receipt", ok)
	add("POST "+cs+"/rooms/{room}/read_markers", "/rooms/read_markers", ok)
	add("PUT "+cs+"/presence/{user}/status", "/presence", ok)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.unknow = append(s.unknow, r.Method+" "+r.URL.Path)
		s.count(r, "unknown")
		s.mu.Unlock()
		writeErr(w, 404, "M_UNRECOGNIZED", "memhs does not answer "+r.URL.Path)
	})
	return mux
}

// sentReply carries a send's reply and what the send hook should see.
type sentReply struct {
	reply any
	sent  *Sent
}

func mxErr(code, msg string) map[string]string {
	return map[string]string{"errcode": code, "error": msg}
}

func (s *Server) register(r *http.Request, body []byte, _ string) (int, any) {
	var req struct {
		Username string `json:"username"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Username == "" {
		return 400, mxErr("M_BAD_JSON", "username required")
	}
	uid := "@" + req.Username + ":" + s.Domain
	if _, ok := s.users[uid]; ok {
		return 400, mxErr("M_USER_IN_USE", "user ID already taken")
	}
	s.ensureUser(uid)
	return 200, map[string]string{"user_id": uid, "home_server": s.Domain}
}

func (s *Server) login(r *http.Request, body []byte, _ string) (int, any) {
	var req struct {
		Identifier struct {
			User string `json:"user"`
		} `json:"identifier"`
	}
	_ = json.Unmarshal(body, &req)
	uid := req.Identifier.User
	if !strings.HasPrefix(uid, "@") {
		uid = "@" + uid + ":" + s.Domain
	}
	tok, device := s.newID("syt_"), s.newID("DEV")
	s.tokens[tok] = uid
	s.keys.tokenDevice[tok] = device
	s.ensureUser(uid)
	return 200, map[string]string{"user_id": uid, "access_token": tok, "device_id": device}
}

func (s *Server) getProfile(field string) handler {
	return func(r *http.Request, _ []byte, _ string) (int, any) {
		u := s.users[r.PathValue("user")]
		if u == nil {
			return 404, mxErr("M_NOT_FOUND", "profile not found")
		}
		p := map[string]string{}
		if u.displayname != "" && field != "avatar_url" {
			p["displayname"] = u.displayname
		}
		if u.avatar != "" && field != "displayname" {
			p["avatar_url"] = u.avatar
		}
		return 200, p
	}
}

func (s *Server) setProfile(field string) handler {
	return func(r *http.Request, body []byte, me string) (int, any) {
		var req map[string]string
		_ = json.Unmarshal(body, &req)
		uid := r.PathValue("user")
		if uid != me {
			return 403, mxErr("M_FORBIDDEN", "cannot set another user's profile")
		}
		u := s.ensureUser(uid)
		if field == "displayname" {
			u.displayname = req["displayname"]
		} else {
			u.avatar = req["avatar_url"]
		}
		// Like Synapse and Dendrite: the new profile goes into a member
		// event in every joined room.
		for roomID := range u.joined {
			s.member(s.rooms[roomID], roomID, uid, uid, "join")
		}
		return 200, struct{}{}
	}
}

func (s *Server) createRoom(r *http.Request, body []byte, me string) (int, any) {
	var req struct {
		Name         string   `json:"name"`
		Topic        string   `json:"topic"`
		Invite       []string `json:"invite"`
		Preset       string   `json:"preset"`
		IsDirect     bool     `json:"is_direct"`
		InitialState []struct {
			Type     string          `json:"type"`
			StateKey string          `json:"state_key"`
			Content  json.RawMessage `json:"content"`
		} `json:"initial_state"`
		PowerLevels json.RawMessage `json:"power_level_content_override"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return 400, mxErr("M_BAD_JSON", err.Error())
	}
	if me == "" {
		return 401, mxErr("M_UNKNOWN_TOKEN", "unknown token")
	}
	roomID := s.newID("!") + ":" + s.Domain
	rm := &room{state: map[string]*Event{}, members: map[string]string{}}
	s.rooms[roomID] = rm
	empty := ""
	state := func(typ string, content any) {
		raw, _ := json.Marshal(content)
		s.appendEvent(rm, roomID, me, typ, &empty, raw, 0)
	}
	state("m.room.create", map[string]string{"creator": me, "room_version": "10"})
	s.member(rm, roomID, me, me, "join")
	if len(req.PowerLevels) > 0 {
		s.appendEvent(rm, roomID, me, "m.room.power_levels", &empty, req.PowerLevels, 0)
	} else {
		state("m.room.power_levels", map[string]any{"users": map[string]int{me: 100}})
	}
	joinRule := "invite"
	if req.Preset == "public_chat" {
		joinRule = "public"
	}
	state("m.room.join_rules", map[string]string{"join_rule": joinRule})
	state("m.room.history_visibility", map[string]string{"history_visibility": "shared"})
	for _, st := range req.InitialState {
		key := st.StateKey
		s.appendEvent(rm, roomID, me, st.Type, &key, st.Content, 0)
	}
	if req.Name != "" {
		state("m.room.name", map[string]string{"name": req.Name})
	}
	if req.Topic != "" {
		state("m.room.topic", map[string]string{"topic": req.Topic})
	}
	for _, uid := range req.Invite {
		s.member(rm, roomID, me, uid, "invite")
	}
	return 200, map[string]string{"room_id": roomID}
}

func (s *Server) membership(membership string) roomHandler {
	return func(r *http.Request, body []byte, me, roomID string, rm *room) (int, any) {
		target := me
		var req struct {
			UserID string `json:"user_id"`
		}
		_ = json.Unmarshal(body, &req)
		if membership != "join" && req.UserID != "" {
			target = req.UserID
		}
		if membership == "join" && rm.members[me] != "join" && rm.members[me] != "invite" {
			return 403, mxErr("M_FORBIDDEN", "not invited")
		}
		if rm.members[target] != membership {
			s.member(rm, roomID, me, target, membership)
		}
		return 200, map[string]string{"room_id": roomID}
	}
}

func (s *Server) send(r *http.Request, body []byte, me, roomID string, rm *room) (int, any) {
	if rm.members[me] != "join" {
		return 403, mxErr("M_FORBIDDEN", me+" is not in the room")
	}
	// Idempotent by (sender, txn id), as the spec asks of a device.
	key := me + "|" + r.PathValue("txn")
	if evID, ok := s.txns[key]; ok {
		return 200, map[string]string{"event_id": evID}
	}
	ts, _ := strconv.ParseInt(r.URL.Query().Get("ts"), 10, 64)
	typ := r.PathValue("type")
	ev := s.appendEvent(rm, roomID, me, typ, nil, json.RawMessage(body), ts)
	s.txns[key] = ev.ID
	return 200, sentReply{
		reply: map[string]string{"event_id": ev.ID},
		sent:  &Sent{RoomID: roomID, Sender: me, Type: typ, Content: ev.Content, At: time.Now()},
	}
}

func (s *Server) redact(r *http.Request, body []byte, me, roomID string, rm *room) (int, any) {
	key := me + "|" + r.PathValue("txn")
	if evID, ok := s.txns[key]; ok {
		return 200, map[string]string{"event_id": evID}
	}
	ev := s.appendEvent(rm, roomID, me, "m.room.redaction", nil, json.RawMessage(body), 0)
	s.txns[key] = ev.ID
	return 200, map[string]string{"event_id": ev.ID}
}

func (s *Server) putState(r *http.Request, body []byte, me, roomID string, rm *room) (int, any) {
	key := r.PathValue("key")
	// A member event for oneself is how a join with a profile is sent.
	selfJoin := r.PathValue("type") == "m.room.member" && key == me && rm.members[me] == "invite"
	if rm.members[me] != "join" && !selfJoin {
		return 403, mxErr("M_FORBIDDEN", me+" is not in the room")
	}
	ev := s.appendEvent(rm, roomID, me, r.PathValue("type"), &key, json.RawMessage(body), 0)
	return 200, map[string]string{"event_id": ev.ID}
}

func (s *Server) getState(r *http.Request, _ []byte, _, _ string, rm *room) (int, any) {
	ev := rm.state[r.PathValue("type")+"\x00"+r.PathValue("key")]
	if ev == nil {
		return 404, mxErr("M_NOT_FOUND", "event not found")
	}
	return 200, ev.Content
}

func (s *Server) fullState(r *http.Request, _ []byte, _, _ string, rm *room) (int, any) {
	out := make([]*Event, 0, len(rm.state))
	for _, ev := range rm.state {
		out = append(out, ev)
	}
	return 200, out
}

func (s *Server) messages(r *http.Request, _ []byte, _, _ string, rm *room) (int, any) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 10
	}
	from, _ := strconv.Atoi(strings.TrimPrefix(q.Get("from"), "t"))
	n := len(rm.timeline)
	var chunk []*Event
	end := from
	if q.Get("dir") == "f" {
		for i := from; i < n && len(chunk) < limit; i++ {
			chunk = append(chunk, rm.timeline[i])
			end = i + 1
		}
	} else {
		start := n
		if q.Get("from") != "" {
			start = from
		}
		for i := start - 1; i >= 0 && len(chunk) < limit; i-- {
			chunk = append(chunk, rm.timeline[i])
			end = i
		}
	}
	resp := map[string]any{"chunk": chunk, "start": q.Get("from")}
	if len(chunk) > 0 {
		resp["end"] = "t" + strconv.Itoa(end)
	}
	return 200, resp
}

func (s *Server) joinedMembers(_ *http.Request, _ []byte, _, roomID string, rm *room) (int, any) {
	return 200, s.fmtMember(roomID, rm)
}

func (s *Server) members(r *http.Request, _ []byte, _, _ string, rm *room) (int, any) {
	var chunk []*Event
	for uid := range rm.members {
		chunk = append(chunk, rm.state["m.room.member\x00"+uid])
	}
	return 200, map[string]any{"chunk": chunk}
}

func (s *Server) joinedRooms(_ *http.Request, _ []byte, me string) (int, any) {
	out := []string{}
	if u := s.users[me]; u != nil {
		for roomID := range u.joined {
			out = append(out, roomID)
		}
	}
	return 200, map[string]any{"joined_rooms": out}
}

func (s *Server) getAccountData(r *http.Request, _ []byte, me string) (int, any) {
	if r.PathValue("user") != me {
		return 403, mxErr("M_FORBIDDEN", "not your account data")
	}
	raw := s.ensureUser(me).accountData[r.PathValue("type")]
	if raw == nil {
		return 404, mxErr("M_NOT_FOUND", "account data not found")
	}
	return 200, raw
}

func (s *Server) putAccountData(r *http.Request, body []byte, me string) (int, any) {
	if r.PathValue("user") != me {
		return 403, mxErr("M_FORBIDDEN", "not your account data")
	}
	if !json.Valid(body) {
		return 400, mxErr("M_BAD_JSON", "invalid JSON")
	}
	s.ensureUser(me).accountData[r.PathValue("type")] = append(json.RawMessage(nil), body...)
	return 200, struct{}{}
}
