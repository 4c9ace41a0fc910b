package fakematrix

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/matrix"
)

// User is the fake's matrix.API for one user.
type User struct {
	hs     *Homeserver
	id     id.UserID
	puppet bool
}

var _ matrix.API = (*User)(nil)

// UserID implements matrix.API.
func (u *User) UserID() id.UserID { return u.id }

// IsDoublePuppet implements matrix.API.
func (u *User) IsDoublePuppet() bool { return u.puppet }

// Register implements matrix.API.
func (u *User) Register(ctx context.Context) error {
	return u.hs.apply(Call{User: u.id, Method: "Register"}, func() error {
		u.hs.registered[u.id] = true
		return nil
	})
}

func (u *User) send(method string, roomID id.RoomID, evtType event.Type, stateKey *string, content any, extra []mautrix.ReqSendEvent) (*mautrix.RespSendEvent, error) {
	c := Call{User: u.id, Method: method, RoomID: roomID, EventType: evtType, Content: toMap(content)}
	if stateKey != nil {
		c.StateKey = *stateKey
	}
	if len(extra) > 0 {
		c.TxnID = extra[0].TransactionID
	}
	var eventID id.EventID
	err := u.hs.apply(c, func() error {
		key := string(u.id) + "\x00" + c.TxnID
		if earlier, ok := u.hs.sent[key]; ok && c.TxnID != "" {
			u.hs.calls[len(u.hs.calls)-1].EventID = earlier
			eventID = earlier
			return nil
		}
		eventID = id.EventID(u.hs.nextID('$'))
		u.hs.calls[len(u.hs.calls)-1].EventID = eventID
		if c.TxnID != "" {
			u.hs.sent[key] = eventID
		}
		if stateKey != nil {
			u.hs.putState(roomID, evtType, *stateKey, content)
		}
		evt := map[string]any{"event_id": eventID, "room_id": roomID, "sender": u.id, "type": evtType.Type, "content": content}
		if stateKey != nil {
			evt["state_key"] = *stateKey
		}
		raw, _ := json.Marshal(evt)
		u.hs.timeline[roomID] = append(u.hs.timeline[roomID], raw)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &mautrix.RespSendEvent{EventID: eventID}, nil
}

// SendMessageEvent implements matrix.API.
func (u *User) SendMessageEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, content any, extra ...mautrix.ReqSendEvent) (*mautrix.RespSendEvent, error) {
	// As an HTTP client does, a cancelled request sends nothing.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return u.send("SendMessageEvent", roomID, eventType, nil, content, extra)
}

// SendStateEvent implements matrix.API.
func (u *User) SendStateEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, stateKey string, content any, extra ...mautrix.ReqSendEvent) (*mautrix.RespSendEvent, error) {
	return u.send("SendStateEvent", roomID, eventType, &stateKey, content, extra)
}

// RedactEvent implements matrix.API.
func (u *User) RedactEvent(ctx context.Context, roomID id.RoomID, eventID id.EventID, extra ...mautrix.ReqRedact) (*mautrix.RespSendEvent, error) {
	c := Call{User: u.id, Method: "RedactEvent", RoomID: roomID, EventID: eventID}
	if len(extra) > 0 {
		c.TxnID = extra[0].TxnID
		c.Content = toMap(extra[0].Extra)
	}
	var redaction id.EventID
	err := u.hs.apply(c, func() error {
		redaction = id.EventID(u.hs.nextID('$'))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &mautrix.RespSendEvent{EventID: redaction}, nil
}

// SetReadMarkers implements matrix.API.
func (u *User) SetReadMarkers(ctx context.Context, roomID id.RoomID, content any) error {
	return u.hs.apply(Call{User: u.id, Method: "SetReadMarkers", RoomID: roomID, Content: toMap(content)}, func() error { return nil })
}

// SendReceipt implements matrix.API.
func (u *User) SendReceipt(ctx context.Context, roomID id.RoomID, eventID id.EventID, receiptType event.ReceiptType, content any) error {
	c := Call{User: u.id, Method: "SendReceipt", RoomID: roomID, EventID: eventID, StateKey: string(receiptType), Content: toMap(content)}
	return u.hs.apply(c, func() error { return nil })
}

// UserTyping implements matrix.API.
func (u *User) UserTyping(ctx context.Context, roomID id.RoomID, typing bool, timeout time.Duration) (*mautrix.RespTyping, error) {
	c := Call{User: u.id, Method: "UserTyping", RoomID: roomID, Content: map[string]any{"typing": typing, "timeout_ms": timeout.Milliseconds()}}
	return &mautrix.RespTyping{}, u.hs.apply(c, func() error { return nil })
}

// SetPresence implements matrix.API.
func (u *User) SetPresence(ctx context.Context, presence, statusMsg string) error {
	c := Call{User: u.id, Method: "SetPresence", Content: map[string]any{"presence": presence, "status_msg": statusMsg}}
	return u.hs.apply(c, func() error { return nil })
}

// CreateRoom implements matrix.API: the creator joins, the invitees are
// invited, and the initial state is set.
func (u *User) CreateRoom(ctx context.Context, req *mautrix.ReqCreateRoom) (*mautrix.RespCreateRoom, error) {
	var roomID id.RoomID
	err := u.hs.apply(Call{User: u.id, Method: "CreateRoom", Content: toMap(req)}, func() error {
		roomID = id.RoomID(u.hs.nextID('!'))
		u.hs.putState(roomID, event.StateMember, string(u.id), &event.MemberEventContent{Membership: event.MembershipJoin})
		for _, invitee := range req.Invite {
			u.hs.putState(roomID, event.StateMember, string(invitee), &event.MemberEventContent{Membership: event.MembershipInvite, IsDirect: req.IsDirect})
		}
		for _, evt := range req.InitialState {
			key := ""
			if evt.StateKey != nil {
				key = *evt.StateKey
			}
			u.hs.putState(roomID, evt.Type, key, &evt.Content)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &mautrix.RespCreateRoom{RoomID: roomID}, nil
}

func (u *User) setMembership(method string, roomID id.RoomID, target id.UserID, m event.Membership, extra map[string]any) error {
	content := map[string]any{"membership": m}
	for k, v := range extra {
		content[k] = v
	}
	return u.hs.apply(Call{User: u.id, Method: method, RoomID: roomID, Target: target, Content: content}, func() error {
		u.hs.putState(roomID, event.StateMember, string(target), content)
		return nil
	})
}

// JoinRoomByID implements matrix.API.
func (u *User) JoinRoomByID(ctx context.Context, roomID id.RoomID, extraContent ...map[string]any) (*mautrix.RespJoinRoom, error) {
	var extra map[string]any
	if len(extraContent) > 0 {
		extra = extraContent[0]
	}
	if err := u.setMembership("JoinRoomByID", roomID, u.id, event.MembershipJoin, extra); err != nil {
		return nil, err
	}
	return &mautrix.RespJoinRoom{RoomID: roomID}, nil
}

// LeaveRoom implements matrix.API.
func (u *User) LeaveRoom(ctx context.Context, roomID id.RoomID, extra ...any) (*mautrix.RespLeaveRoom, error) {
	content := map[string]any{}
	for _, e := range extra {
		switch v := e.(type) {
		case *mautrix.ReqLeave:
			if v != nil && v.Reason != "" {
				content["reason"] = v.Reason
			}
		case map[string]any:
			for k, val := range v {
				content[k] = val
			}
		}
	}
	if err := u.setMembership("LeaveRoom", roomID, u.id, event.MembershipLeave, content); err != nil {
		return nil, err
	}
	return &mautrix.RespLeaveRoom{}, nil
}

// InviteUser implements matrix.API.
func (u *User) InviteUser(ctx context.Context, roomID id.RoomID, req *mautrix.ReqInviteUser, extraContent ...map[string]any) (*mautrix.RespInviteUser, error) {
	var extra map[string]any
	if len(extraContent) > 0 {
		extra = extraContent[0]
	}
	if err := u.setMembership("InviteUser", roomID, req.UserID, event.MembershipInvite, extra); err != nil {
		return nil, err
	}
	return &mautrix.RespInviteUser{}, nil
}

func (u *User) readState(method string, roomID id.RoomID, eventType event.Type, key string, out any) error {
	return u.hs.apply(Call{User: u.id, Method: method, RoomID: roomID, EventType: eventType, StateKey: key}, func() error {
		raw, ok := u.hs.state[roomID][stateKey(eventType, key)]
		if !ok {
			return NotFound("state event")
		}
		return json.Unmarshal(raw, out)
	})
}

// StateEvent implements matrix.API.
func (u *User) StateEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, stateKey string, out any) error {
	return u.readState("StateEvent", roomID, eventType, stateKey, out)
}

// RoomStateEvent implements matrix.API.
func (u *User) RoomStateEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, stateKey string, out any) error {
	return u.readState("RoomStateEvent", roomID, eventType, stateKey, out)
}

// members lists a room's member events; the caller holds the lock.
func (u *User) members(roomID id.RoomID) []*event.Event {
	var out []*event.Event
	prefix := event.StateMember.Type + "\x00"
	for k, raw := range u.hs.state[roomID] {
		if len(k) <= len(prefix) || k[:len(prefix)] != prefix {
			continue
		}
		key := k[len(prefix):]
		evt := &event.Event{Type: event.StateMember, StateKey: &key, RoomID: roomID}
		_ = json.Unmarshal(raw, &evt.Content.VeryRaw)
		evt.Content.VeryRaw = raw
		_ = evt.Content.ParseRaw(event.StateMember)
		out = append(out, evt)
	}
	return out
}

// Members implements matrix.API.
func (u *User) Members(ctx context.Context, roomID id.RoomID, req ...mautrix.ReqMembers) (*mautrix.RespMembers, error) {
	resp := &mautrix.RespMembers{}
	err := u.hs.apply(Call{User: u.id, Method: "Members", RoomID: roomID}, func() error {
		resp.Chunk = u.members(roomID)
		return nil
	})
	return resp, err
}

// JoinedMembers implements matrix.API.
func (u *User) JoinedMembers(ctx context.Context, roomID id.RoomID) (*mautrix.RespJoinedMembers, error) {
	resp := &mautrix.RespJoinedMembers{Joined: map[id.UserID]mautrix.JoinedMember{}}
	err := u.hs.apply(Call{User: u.id, Method: "JoinedMembers", RoomID: roomID}, func() error {
		for _, evt := range u.members(roomID) {
			if evt.Content.AsMember().Membership == event.MembershipJoin {
				resp.Joined[id.UserID(*evt.StateKey)] = mautrix.JoinedMember{}
			}
		}
		return nil
	})
	return resp, err
}

// JoinedRooms implements matrix.API.
func (u *User) JoinedRooms(ctx context.Context) (*mautrix.RespJoinedRooms, error) {
	resp := &mautrix.RespJoinedRooms{}
	err := u.hs.apply(Call{User: u.id, Method: "JoinedRooms"}, func() error {
		for roomID, state := range u.hs.state {
			var m event.MemberEventContent
			if raw, ok := state[stateKey(event.StateMember, string(u.id))]; ok && json.Unmarshal(raw, &m) == nil && m.Membership == event.MembershipJoin {
				resp.JoinedRooms = append(resp.JoinedRooms, roomID)
			}
		}
		// In creation order, so that tests are deterministic.
		slices.SortFunc(resp.JoinedRooms, func(a, b id.RoomID) int { return roomSeq(a) - roomSeq(b) })
		return nil
	})
	return resp, err
}

// Messages implements matrix.API: the whole timeline in one page, in the
// direction asked.
func (u *User) Messages(ctx context.Context, roomID id.RoomID, from, to string, dir mautrix.Direction, filter *mautrix.FilterPart, limit int) (*mautrix.RespMessages, error) {
	resp := &mautrix.RespMessages{Start: from}
	err := u.hs.apply(Call{User: u.id, Method: "Messages", RoomID: roomID}, func() error {
		raws := u.hs.timeline[roomID]
		for i := range raws {
			raw := raws[i]
			if dir == mautrix.DirectionBackward {
				raw = raws[len(raws)-1-i]
			}
			evt := &event.Event{}
			if err := json.Unmarshal(raw, evt); err == nil {
				resp.Chunk = append(resp.Chunk, evt)
			}
		}
		return nil
	})
	return resp, err
}

// Sync implements matrix.API. The fake keeps no sync stream: the call is
// recorded and answered as an endpoint it does not know.
func (u *User) Sync(ctx context.Context, since, filter string, timeout time.Duration, out any) error {
	return u.hs.apply(Call{User: u.id, Method: "Sync"}, func() error {
		return mautrix.MUnrecognized.WithMessage("the fake homeserver keeps no /sync")
	})
}

// GetEvent implements matrix.API.
func (u *User) GetEvent(ctx context.Context, roomID id.RoomID, eventID id.EventID) (*event.Event, error) {
	var out *event.Event
	err := u.hs.apply(Call{User: u.id, Method: "GetEvent", RoomID: roomID, EventID: eventID}, func() error {
		for _, raw := range u.hs.timeline[roomID] {
			var evt event.Event
			if json.Unmarshal(raw, &evt) == nil && evt.ID == eventID {
				out = &evt
				return nil
			}
		}
		return NotFound("event")
	})
	return out, err
}

// EventsAfter implements matrix.API.
func (u *User) EventsAfter(ctx context.Context, roomID id.RoomID, eventID id.EventID, limit int) ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := u.hs.apply(Call{User: u.id, Method: "EventsAfter", RoomID: roomID, EventID: eventID}, func() error {
		found := false
		for _, raw := range u.hs.timeline[roomID] {
			if found && len(out) < limit {
				out = append(out, raw)
			}
			var head struct {
				ID id.EventID `json:"event_id"`
			}
			if json.Unmarshal(raw, &head) == nil && head.ID == eventID {
				found = true
			}
		}
		if !found {
			return NotFound("event")
		}
		return nil
	})
	return out, err
}

// UploadMedia implements matrix.API.
func (u *User) UploadMedia(ctx context.Context, req mautrix.ReqUploadMedia) (*mautrix.RespMediaUpload, error) {
	data := req.ContentBytes
	if req.Content != nil {
		var err error
		if data, err = io.ReadAll(req.Content); err != nil {
			return nil, err
		}
	}
	return u.upload(data, req.ContentType, req.FileName)
}

// UploadBytes implements matrix.API.
func (u *User) UploadBytes(ctx context.Context, data []byte, contentType string) (*mautrix.RespMediaUpload, error) {
	return u.upload(data, contentType, "")
}

func (u *User) upload(data []byte, contentType, name string) (*mautrix.RespMediaUpload, error) {
	var uri id.ContentURI
	c := Call{User: u.id, Method: "UploadMedia", Content: map[string]any{"content_type": contentType, "filename": name, "size": len(data)}}
	err := u.hs.apply(c, func() error {
		u.hs.seq++
		uri = id.ContentURI{Homeserver: u.hs.Domain, FileID: "media" + string(rune('a'+u.hs.seq%26)) + itoa(u.hs.seq)}
		u.hs.media[uri.String()] = bytes.Clone(data)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &mautrix.RespMediaUpload{ContentURI: uri}, nil
}

// Download implements matrix.API.
func (u *User) Download(ctx context.Context, uri id.ContentURI, header http.Header) (*http.Response, error) {
	var data []byte
	err := u.hs.apply(Call{User: u.id, Method: "Download", Content: map[string]any{"uri": uri.String()}}, func() error {
		var ok bool
		if data, ok = u.hs.media[uri.String()]; !ok {
			return NotFound("media")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: http.StatusOK, ContentLength: int64(len(data)), Header: http.Header{},
		Body: io.NopCloser(bytes.NewReader(data))}, nil
}

// SetDisplayName implements matrix.API.
func (u *User) SetDisplayName(ctx context.Context, name string) error {
	return u.hs.apply(Call{User: u.id, Method: "SetDisplayName", Content: map[string]any{"displayname": name}}, func() error {
		p := u.hs.profile(u.id)
		p.DisplayName = name
		return nil
	})
}

// SetAvatarURL implements matrix.API.
func (u *User) SetAvatarURL(ctx context.Context, uri id.ContentURI) error {
	return u.hs.apply(Call{User: u.id, Method: "SetAvatarURL", Content: map[string]any{"avatar_url": uri.String()}}, func() error {
		u.hs.profile(u.id).AvatarURL = uri
		return nil
	})
}

func (hs *Homeserver) profile(userID id.UserID) *mautrix.RespUserProfile {
	p, ok := hs.profiles[userID]
	if !ok {
		p = &mautrix.RespUserProfile{}
		hs.profiles[userID] = p
	}
	return p
}

// GetProfile implements matrix.API.
func (u *User) GetProfile(ctx context.Context, userID id.UserID) (*mautrix.RespUserProfile, error) {
	var out mautrix.RespUserProfile
	err := u.hs.apply(Call{User: u.id, Method: "GetProfile", Target: userID}, func() error {
		if p, ok := u.hs.profiles[userID]; ok {
			out = *p
			return nil
		}
		return NotFound("profile")
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Whoami implements matrix.API.
// Crypto is nil: the fake users have no devices.
func (u *User) Crypto() mautrix.CryptoHelper { return nil }

func (u *User) Whoami(ctx context.Context) (*mautrix.RespWhoami, error) {
	err := u.hs.apply(Call{User: u.id, Method: "Whoami"}, func() error { return nil })
	if err != nil {
		return nil, err
	}
	return &mautrix.RespWhoami{UserID: u.id}, nil
}

// GetAccountData implements matrix.API.
func (u *User) GetAccountData(ctx context.Context, eventType string, out any) error {
	return u.hs.apply(Call{User: u.id, Method: "GetAccountData", StateKey: eventType}, func() error {
		raw, ok := u.hs.accountData[u.id][eventType]
		if !ok {
			return NotFound("account data")
		}
		return json.Unmarshal(raw, out)
	})
}

// SetAccountData implements matrix.API. Clobber, if set, then changes what
// was written, like a client writing at the same moment.
func (u *User) SetAccountData(ctx context.Context, eventType string, data any) error {
	return u.hs.apply(Call{User: u.id, Method: "SetAccountData", StateKey: eventType, Content: toMap(data)}, func() error {
		raw, err := json.Marshal(data)
		if err != nil {
			return err
		}
		if u.hs.accountData[u.id] == nil {
			u.hs.accountData[u.id] = make(map[string]json.RawMessage)
		}
		if u.hs.Clobber != nil {
			var parsed map[string]json.RawMessage
			_ = json.Unmarshal(raw, &parsed)
			if changed := u.hs.Clobber(u.id, eventType, parsed); changed != nil {
				raw, _ = json.Marshal(changed)
			}
		}
		u.hs.accountData[u.id][eventType] = raw
		return nil
	})
}

// roomSeq is the sequence number in a room id the fake generated.
func roomSeq(roomID id.RoomID) int {
	n := 0
	for _, c := range strings.TrimPrefix(string(roomID), "!") {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
