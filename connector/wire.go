// Package connector holds the wire types of the connector protocol
// (docs/connector-protocol.md) that both ends share: frames, events,
// ephemerals, commands, their validation and the media paths. The bridge's
// side of the protocol is in connector/server, the kit for connector authors
// in connector/sdk.
package connector

import (
	"encoding/json"
	"fmt"
)

// ProtocolVersion is the only version of the connector protocol this code speaks.
const ProtocolVersion = 1

// Subprotocol is the Sec-WebSocket-Protocol value both ends must agree on.
const Subprotocol = "dmbridge.v1"

// Path is the websocket endpoint on the bridge's connector listener.
const Path = "/_connector/v1"

// MediaPathPrefix is where the bridge serves Matrix media to connectors.
const MediaPathPrefix = "/_connector/v1/media/"

// The limits a bridge announces in welcome unless configured otherwise.
// They live here, with the wire types, so that the bridge's server, the
// SDK and the conformance suite's stand-in bridge start from the same
// numbers.
const (
	// DefaultMaxFrameBytes is the frame size limit (1 MiB, as the
	// protocol document says).
	DefaultMaxFrameBytes int64 = 1 << 20
	// DefaultMaxInFlight is welcome.max_in_flight.
	DefaultMaxInFlight = 256
)

// Frame types.
const (
	TypeHello     = "hello"
	TypeWelcome   = "welcome"
	TypeEvent     = "event"
	TypeAck       = "ack"
	TypeEphemeral = "ephemeral"
	TypeCmd       = "cmd"
	TypeRes       = "res"
	TypeErr       = "err"
)

// Event kinds (durable, sequenced).
const (
	KindMessage        = "message"
	KindEdit           = "edit"
	KindDelete         = "delete"
	KindReaction       = "reaction"
	KindReactionRemove = "reaction_remove"
	KindReadReceipt    = "read_receipt"
	KindContact        = "contact"
	KindChatDeleted    = "chat_deleted"
	KindLogin          = "login"
)

// Ephemeral kinds (never stored, never acked).
const (
	KindTyping   = "typing"
	KindPresence = "presence"
)

// Command ops (bridge → connector).
const (
	OpSendMessage       = "send_message"
	OpEditMessage       = "edit_message"
	OpDeleteMessage     = "delete_message"
	OpReact             = "react"
	OpUnreact           = "unreact"
	OpMarkRead          = "mark_read"
	OpSetTyping         = "set_typing"
	OpSetPresence       = "set_presence"
	OpResolveIdentifier = "resolve_identifier"
	OpGetContact        = "get_contact"
	OpBackfill          = "backfill"
	// OpListChats is a v1 extension (capability list_chats): the login's
	// most recently active chats, newest first.
	OpListChats = "list_chats"
)

// Error codes carried in err frames.
const (
	ErrUnknownKind = "M_UNKNOWN_KIND"
	ErrBadFrame    = "M_BAD_FRAME"
	ErrBadSeq      = "M_BAD_SEQ"
	ErrForbidden   = "M_FORBIDDEN"
	ErrUnsupported = "M_UNSUPPORTED"
	ErrNotFound    = "M_NOT_FOUND"
	ErrRateLimited = "M_RATE_LIMITED"
	ErrNetwork     = "M_NETWORK"
	ErrTimeout     = "M_TIMEOUT"
	ErrUnknown     = "M_UNKNOWN"
)

// WebSocket close codes used by the protocol.
const (
	CloseProtocolError = 4000
	CloseReplaced      = 4001
)

// Frame is the envelope of every websocket message. Data stays raw so that
// each side decodes it into the type that the frame's type and kind call for.
type Frame struct {
	Type  string          `json:"type"`
	Seq   int64           `json:"seq,omitempty"`
	ID    string          `json:"id,omitempty"`
	Op    string          `json:"op,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error *Error          `json:"error,omitempty"`
}

// Error is the body of an err frame, and the error type returned for a failed command.
type Error struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
	// Login names the refused login of an M_FORBIDDEN answer to hello, which
	// has no id or seq to point at. An addition to the spec's error object.
	Login string `json:"login,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Hello is the connector's first frame.
type Hello struct {
	Protocol     []int        `json:"protocol"`
	Connector    Software     `json:"connector"`
	Network      Network      `json:"network"`
	Capabilities Capabilities `json:"capabilities"`
	Logins       []Login      `json:"logins"`
	// MaxFrameBytes is the largest frame the connector reads, so that the
	// bridge refuses a larger command with M_TOO_LARGE instead of sending
	// it into a 1009 close (and sending it again after the reconnect). An
	// addition to the spec's hello; 0 means not said.
	MaxFrameBytes int64 `json:"max_frame_bytes,omitempty"`
}

// Software names a program and its version.
type Software struct {
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Network describes the chat network a connector reaches.
type Network struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	GhostAvatar *string `json:"ghost_avatar"`
}

// Capabilities says what the network can carry.
type Capabilities struct {
	Formats           []string `json:"formats"`
	Media             bool     `json:"media"`
	Edit              bool     `json:"edit"`
	Delete            bool     `json:"delete"`
	Reactions         bool     `json:"reactions"`
	Replies           bool     `json:"replies"`
	ReadReceipts      bool     `json:"read_receipts"`
	Typing            bool     `json:"typing"`
	Presence          bool     `json:"presence"`
	ResolveIdentifier bool     `json:"resolve_identifier"`
	Backfill          bool     `json:"backfill"`
	// ListChats says the connector answers list_chats, a v1 extension.
	ListChats bool `json:"list_chats,omitempty"`
}

// HasFormat reports whether the network accepts the given text format.
func (c Capabilities) HasFormat(format string) bool {
	for _, f := range c.Formats {
		if f == format {
			return true
		}
	}
	return false
}

// Login states.
const (
	LoginConnected      = "connected"
	LoginDisconnected   = "disconnected"
	LoginBadCredentials = "bad_credentials"
)

// Login is one account on the network, owned by one Matrix user.
type Login struct {
	ID         string `json:"id"`
	MatrixUser string `json:"matrix_user"`
	Name       string `json:"name,omitempty"`
	State      string `json:"state,omitempty"`
}

// Welcome is the bridge's answer to hello.
type Welcome struct {
	Protocol    int   `json:"protocol"`
	AckedSeq    int64 `json:"acked_seq"`
	MaxInFlight int   `json:"max_in_flight"`
	// MaxFrameBytes tells the connector the frame size limit, so it can
	// refuse an oversize event before storing it instead of replaying it
	// into a 1009 close forever. An addition to the spec's welcome.
	MaxFrameBytes int64    `json:"max_frame_bytes,omitempty"`
	Bridge        Software `json:"bridge"`
}

// Chat types.
const ChatTypeDM = "dm"

// Chat identifies a conversation on the network.
type Chat struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	With string `json:"with,omitempty"`
}

// Sender identifies who sent something in a chat.
type Sender struct {
	ID   string `json:"id"`
	IsMe bool   `json:"is_me"`
}

// Avatar is a contact's picture; ID changes exactly when the picture does.
type Avatar struct {
	ID       string `json:"id"`
	URL      string `json:"url,omitempty"`
	MimeType string `json:"mimetype,omitempty"`
}

// Contact is a profile on the network.
type Contact struct {
	ID     string  `json:"id"`
	Name   string  `json:"name,omitempty"`
	Avatar *Avatar `json:"avatar,omitempty"`
}

// Attachment is a file, either fetched from URL or carried inline as base64 Data.
type Attachment struct {
	Name     string `json:"name"`
	MimeType string `json:"mimetype"`
	Size     int64  `json:"size"`
	URL      string `json:"url,omitempty"`
	Data     []byte `json:"data,omitempty"`
}

// Event is the data of an event frame. Which fields are set depends on Kind.
type Event struct {
	Kind        string       `json:"kind"`
	Login       string       `json:"login"`
	TS          int64        `json:"ts,omitempty"`
	Chat        *Chat        `json:"chat,omitempty"`
	Sender      *Sender      `json:"sender,omitempty"`
	ID          string       `json:"id,omitempty"`
	Text        string       `json:"text,omitempty"`
	HTML        string       `json:"html,omitempty"`
	ReplyTo     string       `json:"reply_to,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
	Txn         string       `json:"txn,omitempty"`
	Target      string       `json:"target,omitempty"`
	Key         string       `json:"key,omitempty"`
	UpTo        string       `json:"up_to,omitempty"`
	Contact     *Contact     `json:"contact,omitempty"`
	State       string       `json:"state,omitempty"`
	Message     string       `json:"message,omitempty"`
}

// Ephemeral is the data of an ephemeral frame.
type Ephemeral struct {
	Kind          string  `json:"kind"`
	Login         string  `json:"login"`
	Chat          *Chat   `json:"chat,omitempty"`
	Sender        *Sender `json:"sender,omitempty"`
	Typing        bool    `json:"typing,omitempty"`
	TimeoutMS     int64   `json:"timeout_ms,omitempty"`
	Contact       string  `json:"contact,omitempty"`
	Presence      string  `json:"presence,omitempty"`
	StatusMsg     string  `json:"status_msg,omitempty"`
	LastActiveAgo int64   `json:"last_active_ago,omitempty"`
}

// Command payloads. One struct covers every op; the table in the protocol
// document says which fields each op uses.
type Command struct {
	Login       string       `json:"login"`
	Chat        *Chat        `json:"chat,omitempty"`
	Txn         string       `json:"txn,omitempty"`
	Text        string       `json:"text,omitempty"`
	HTML        string       `json:"html,omitempty"`
	ReplyTo     string       `json:"reply_to,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
	Target      string       `json:"target,omitempty"`
	Key         string       `json:"key,omitempty"`
	UpTo        string       `json:"up_to,omitempty"`
	Typing      bool         `json:"typing,omitempty"`
	TimeoutMS   int64        `json:"timeout_ms,omitempty"`
	Presence    string       `json:"presence,omitempty"`
	StatusMsg   string       `json:"status_msg,omitempty"`
	Identifier  string       `json:"identifier,omitempty"`
	Create      bool         `json:"create,omitempty"`
	ID          string       `json:"id,omitempty"`
	Before      *string      `json:"before,omitempty"`
	Limit       int          `json:"limit,omitempty"`
}

// Result is the data of a res frame. Which fields are set depends on the op.
type Result struct {
	ID       string   `json:"id,omitempty"`
	TS       int64    `json:"ts,omitempty"`
	Contact  *Contact `json:"contact,omitempty"`
	Chat     *Chat    `json:"chat,omitempty"`
	Messages []Event  `json:"messages,omitempty"`
	HasMore  bool     `json:"has_more,omitempty"`
	// Chats answers list_chats, newest activity first.
	Chats []Chat `json:"chats,omitempty"`
}
