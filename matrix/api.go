// Package matrix is the one place where the bridge acts on the homeserver as
// a Matrix user. API is what portal/, puppet/ and bot/ may do as one user (a
// ghost, the bridge bot or a double puppet); Intents hands out an API per
// user. The mautrix-backed implementation lives here and nowhere else, so
// that the portal's decisions can be tested against a recording fake
// (internal/fakematrix), and so that a decorator (such as one that encrypts
// what is sent into encrypted rooms) can wrap Intents without the callers
// knowing. Such a decorator embeds the API it wraps and overrides only the
// methods it changes (SendMessageEvent, UploadMedia and Download, say);
// callers never build an API themselves, they get it from Intents.
//
// The method names and signatures follow mautrix-go's IntentAPI, whose
// semantics they keep: a send first makes sure the sender is joined (from the
// state store, without a homeserver call when it is), and a double puppet's
// events carry the bridge's double-puppet marker.
package matrix

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// API is what the bridge does on Matrix as one user.
type API interface {
	// UserID is the Matrix user this API acts as.
	UserID() id.UserID
	// IsDoublePuppet reports whether this API acts as a real user (a double
	// puppet) rather than one of the bridge's own users.
	IsDoublePuppet() bool
	// Register registers the user of the bridge's namespace with the
	// homeserver and records nothing: later calls still check the
	// registration (see Intents.RegisterGhost).
	Register(ctx context.Context) error

	// SendMessageEvent sends a room event, joining the room first if the
	// state store does not say the user is in it.
	SendMessageEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, content any, extra ...mautrix.ReqSendEvent) (*mautrix.RespSendEvent, error)
	// SendStateEvent sends a state event (joining first unless it is the
	// user's own member event).
	SendStateEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, stateKey string, content any, extra ...mautrix.ReqSendEvent) (*mautrix.RespSendEvent, error)
	// RedactEvent redacts an event, joining the room first if needed.
	RedactEvent(ctx context.Context, roomID id.RoomID, eventID id.EventID, extra ...mautrix.ReqRedact) (*mautrix.RespSendEvent, error)
	// SetReadMarkers moves the user's read markers (m.fully_read, m.read).
	SetReadMarkers(ctx context.Context, roomID id.RoomID, content any) error
	// SendReceipt sends a receipt for an event.
	SendReceipt(ctx context.Context, roomID id.RoomID, eventID id.EventID, receiptType event.ReceiptType, content any) error
	// UserTyping sets the user's typing state in a room.
	UserTyping(ctx context.Context, roomID id.RoomID, typing bool, timeout time.Duration) (*mautrix.RespTyping, error)
	// SetPresence sets the user's presence. statusMsg is always sent, empty
	// included, so that clearing a status clears it on the homeserver.
	SetPresence(ctx context.Context, presence, statusMsg string) error

	// CreateRoom creates a room as the user.
	CreateRoom(ctx context.Context, req *mautrix.ReqCreateRoom) (*mautrix.RespCreateRoom, error)
	// JoinRoomByID joins a room; with extra content (or as a double puppet)
	// it writes the member event itself.
	JoinRoomByID(ctx context.Context, roomID id.RoomID, extraContent ...map[string]any) (*mautrix.RespJoinRoom, error)
	// LeaveRoom leaves a room or declines an invite; extra may hold a
	// *mautrix.ReqLeave (reason) or extra member content.
	LeaveRoom(ctx context.Context, roomID id.RoomID, extra ...any) (*mautrix.RespLeaveRoom, error)
	// InviteUser invites someone to a room.
	InviteUser(ctx context.Context, roomID id.RoomID, req *mautrix.ReqInviteUser, extraContent ...map[string]any) (*mautrix.RespInviteUser, error)

	// StateEvent reads one state event of a room the user is in, joining
	// first if the state store does not say so.
	StateEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, stateKey string, out any) error
	// RoomStateEvent reads one state event as the user is, without joining
	// first: for rooms the user may only be invited to.
	RoomStateEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, stateKey string, out any) error
	// Members reads the member events of a room.
	Members(ctx context.Context, roomID id.RoomID, req ...mautrix.ReqMembers) (*mautrix.RespMembers, error)
	// JoinedMembers reads who is joined to a room.
	JoinedMembers(ctx context.Context, roomID id.RoomID) (*mautrix.RespJoinedMembers, error)
	// JoinedRooms lists the rooms the user is joined to.
	JoinedRooms(ctx context.Context) (*mautrix.RespJoinedRooms, error)
	// Messages pages through a room's timeline.
	Messages(ctx context.Context, roomID id.RoomID, from, to string, dir mautrix.Direction, filter *mautrix.FilterPart, limit int) (*mautrix.RespMessages, error)
	// GetEvent reads one event of a room, as far as the user may see it
	// (a room left since: up to the leave, as history visibility allows).
	GetEvent(ctx context.Context, roomID id.RoomID, eventID id.EventID) (*event.Event, error)
	// EventsAfter reads up to limit timeline events that follow an event
	// (GET /context), each kept as raw JSON.
	EventsAfter(ctx context.Context, roomID id.RoomID, eventID id.EventID, limit int) ([]json.RawMessage, error)
	// Sync makes one GET /sync from since ("" for the first) with filter as
	// inline JSON, waiting up to timeout for something new, and decodes the
	// response into out, so that the caller can keep events raw.
	Sync(ctx context.Context, since, filter string, timeout time.Duration, out any) error

	// UploadMedia uploads media as the user.
	UploadMedia(ctx context.Context, req mautrix.ReqUploadMedia) (*mautrix.RespMediaUpload, error)
	// UploadBytes uploads a byte slice as the user.
	UploadBytes(ctx context.Context, data []byte, contentType string) (*mautrix.RespMediaUpload, error)
	// Download opens a stream of Matrix media (authenticated media first,
	// then the legacy endpoint on servers that do not route it). It makes a
	// single attempt; the caller closes the body.
	Download(ctx context.Context, uri id.ContentURI, header http.Header) (*http.Response, error)

	// SetDisplayName sets the user's displayname without reading it first
	// (unlike mautrix's IntentAPI): callers compare with what they stored.
	SetDisplayName(ctx context.Context, name string) error
	// SetAvatarURL sets the user's avatar, skipping an unchanged one.
	SetAvatarURL(ctx context.Context, uri id.ContentURI) error
	// GetProfile reads a user's global profile.
	GetProfile(ctx context.Context, userID id.UserID) (*mautrix.RespUserProfile, error)
	// Whoami asks the homeserver who the user's credentials belong to.
	Whoami(ctx context.Context) (*mautrix.RespWhoami, error)
	// Crypto is the user's device for encrypted rooms; nil without one.
	Crypto() mautrix.CryptoHelper

	// GetAccountData reads one type of the user's global account data into
	// out; a missing one is mautrix.MNotFound.
	GetAccountData(ctx context.Context, eventType string, out any) error
	// SetAccountData writes one type of the user's global account data.
	SetAccountData(ctx context.Context, eventType string, data any) error
}

// Intents hands out the API of each user the bridge acts as. None of its
// methods but RegisterGhost and DoublePuppet's check call the homeserver.
type Intents interface {
	// Bot is the bridge bot.
	Bot() API
	// Ghost is a user of the bridge's namespace. registered says the bridge
	// knows it is registered (spares the state store lookup before its first
	// call); false means "not known", not "unregistered".
	Ghost(userID id.UserID, registered bool) API
	// RegisterGhost registers a ghost with the homeserver (one registered
	// already is fine) and remembers that in the state store.
	RegisterGhost(ctx context.Context, userID id.UserID) error
	// DoublePuppet acts as a real user through an appservice token whose
	// namespace covers the user ("as_token:" double puppeting), masquerading
	// with user_id. It does not check the token; Whoami does.
	DoublePuppet(userID id.UserID, asToken string) (API, error)
	// SetGhostHook makes every ghost's mautrix intent pass through hook
	// before use: end-to-bridge encryption attaches the ghost's device to
	// its client there, so that its sends into encrypted rooms are
	// encrypted below the portals.
	SetGhostHook(hook func(*mas.IntentAPI))
	// SetDoublePuppetHook makes every double puppet's mautrix intent built
	// from now on pass through hook: end-to-bridge encryption gives its
	// client a crypto helper that encrypts with the portal ghost's device
	// (the user gets no device of the bridge's).
	SetDoublePuppetHook(hook func(*mas.IntentAPI))
}
