package connector

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxInlineAttachment is the largest attachment that may travel inline as
// base64 data (decoded size); anything larger must be offered by URL.
const MaxInlineAttachment = 512 * 1024

// MaxAttachments bounds the attachments of one message: each becomes an
// upload and a room event, and one by URL may be up to the bridge's media
// limit, so a single frame must not ask for thousands.
const MaxAttachments = 32

// MaxIDBytes bounds every id the protocol carries (login, chat, contact,
// sender, message, target, reply_to, up_to, reaction key): they are stored
// in database indexes, which PostgreSQL refuses above about 2.7 KB a row.
const MaxIDBytes = 1024

// Presence values of a presence ephemeral.
const (
	PresenceOnline      = "online"
	PresenceUnavailable = "unavailable"
	PresenceOffline     = "offline"
)

// IsKnownEventKind reports whether kind is an event kind of protocol v1.
func IsKnownEventKind(kind string) bool {
	switch kind {
	case KindMessage, KindEdit, KindDelete, KindReaction, KindReactionRemove,
		KindReadReceipt, KindContact, KindChatDeleted, KindLogin:
		return true
	}
	return false
}

// IsKnownEphemeralKind reports whether kind is an ephemeral kind of protocol v1.
func IsKnownEphemeralKind(kind string) bool {
	return kind == KindTyping || kind == KindPresence
}

// IsChatScoped reports whether events of this kind belong to one chat and
// therefore carry a chat object.
func IsChatScoped(kind string) bool {
	switch kind {
	case KindMessage, KindEdit, KindDelete, KindReaction, KindReactionRemove,
		KindReadReceipt, KindChatDeleted:
		return true
	}
	return false
}

// Validate checks the fields that the event's kind requires. An unknown kind
// is reported too; the server tells it apart with IsKnownEventKind first,
// because an unknown kind is acked while an invalid known one is not.
func (e *Event) Validate() error {
	v := validator{kind: e.Kind}
	if err := v.head("event", IsKnownEventKind, e.Login); err != nil {
		return err
	}
	if IsChatScoped(e.Kind) {
		if err := v.chat(e.Chat); err != nil {
			return err
		}
	}
	if err := v.ids("login", e.Login, "id", e.ID, "target", e.Target, "reply_to", e.ReplyTo,
		"up_to", e.UpTo, "key", e.Key); err != nil {
		return err
	}
	if len(e.Attachments) > MaxAttachments {
		return v.fail("attachments", fmt.Sprintf("has %d entries, more than the %d allowed", len(e.Attachments), MaxAttachments))
	}
	switch e.Kind {
	case KindMessage, KindEdit, KindDelete, KindReaction, KindReactionRemove, KindReadReceipt:
		if err := v.sender(e.Sender); err != nil {
			return err
		}
	}
	switch e.Kind {
	case KindMessage, KindEdit, KindDelete, KindReaction, KindReactionRemove:
		if e.ID == "" {
			return v.fail("id", "is required")
		}
	}
	switch e.Kind {
	case KindEdit, KindDelete, KindReaction, KindReactionRemove:
		if e.Target == "" {
			return v.fail("target", "is required")
		}
	}
	switch e.Kind {
	case KindMessage:
		if e.Text == "" && e.HTML == "" && len(e.Attachments) == 0 {
			return v.fail("text", "is required when there is no html and no attachment")
		}
		for i := range e.Attachments {
			if err := v.attachment(i, &e.Attachments[i]); err != nil {
				return err
			}
		}
	case KindEdit:
		if e.Text == "" && e.HTML == "" {
			return v.fail("text", "is required when there is no html")
		}
	case KindReaction, KindReactionRemove:
		if e.Key == "" {
			return v.fail("key", "is required")
		}
	case KindReadReceipt:
		if e.UpTo == "" {
			return v.fail("up_to", "is required")
		}
	case KindContact:
		if err := v.contact(e.Contact); err != nil {
			return err
		}
	case KindLogin:
		if err := v.oneOf("state", e.State, LoginConnected, LoginDisconnected, LoginBadCredentials); err != nil {
			return err
		}
	}
	return nil
}

// MaxStatusMsgBytes bounds a presence status message: it is set on a ghost's
// profile presence, where a longer one only costs the homeserver.
const MaxStatusMsgBytes = 1024

// MaxErrorCodeBytes and MaxErrorMessageBytes bound an error's code and
// message as the bridge keeps them: they reach logs, notices in the user's
// room and the provisioning API's answers, and a connector's error is
// input like any other.
const (
	MaxErrorCodeBytes    = 64
	MaxErrorMessageBytes = 4096
)

// Bounded returns e with its code and message cut to MaxErrorCodeBytes and
// MaxErrorMessageBytes (at a character boundary), and whether anything was
// cut; e itself is left as it is.
func (e *Error) Bounded() (*Error, bool) {
	if len(e.Code) <= MaxErrorCodeBytes && len(e.Message) <= MaxErrorMessageBytes {
		return e, false
	}
	b := *e
	b.Code, b.Message = CutBytes(b.Code, MaxErrorCodeBytes), CutBytes(b.Message, MaxErrorMessageBytes)
	return &b, true
}

// CutBytes cuts s to at most n bytes without splitting a character: for a
// text that must fit one of the protocol's byte bounds.
func CutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Validate checks the fields that the ephemeral's kind requires.
func (e *Ephemeral) Validate() error {
	v := validator{kind: e.Kind}
	if err := v.head("ephemeral", IsKnownEphemeralKind, e.Login); err != nil {
		return err
	}
	if err := v.ids("login", e.Login, "contact", e.Contact); err != nil {
		return err
	}
	switch e.Kind {
	case KindTyping:
		if err := v.chat(e.Chat); err != nil {
			return err
		}
		if err := v.sender(e.Sender); err != nil {
			return err
		}
		if e.TimeoutMS < 0 {
			return v.fail("timeout_ms", "must not be negative")
		}
	case KindPresence:
		if e.Contact == "" {
			return v.fail("contact", "is required")
		}
		if err := v.oneOf("presence", e.Presence, PresenceOnline, PresenceUnavailable, PresenceOffline); err != nil {
			return err
		}
		if len(e.StatusMsg) > MaxStatusMsgBytes {
			return v.fail("status_msg", fmt.Sprintf("is %d bytes, more than the %d allowed", len(e.StatusMsg), MaxStatusMsgBytes))
		}
	}
	return nil
}

// validator carries the kind into every error it builds.
type validator struct{ kind string }

func (v validator) fail(field, reason string) error {
	return &ValidationError{Kind: v.kind, Field: field, Reason: reason}
}

// head checks what events and ephemerals alike carry: a kind that known
// accepts (what names the frame's sort in the error) and a login.
func (v validator) head(what string, known func(string) bool, login string) error {
	switch {
	case v.kind == "":
		return v.fail("kind", "is required")
	case !known(v.kind):
		return v.fail("kind", "is not a known "+what+" kind")
	case login == "":
		return v.fail("login", "is required")
	}
	return nil
}

// oneOf checks a required field that takes one of a few values (a login's
// state, a presence), naming them all in the error for any other.
func (v validator) oneOf(field, value string, allowed ...string) error {
	switch {
	case value == "":
		return v.fail(field, "is required")
	case !slices.Contains(allowed, value):
		return v.fail(field, fmt.Sprintf("%q is not one of %s", value, strings.Join(allowed, ", ")))
	}
	return nil
}

// ids checks that no id is longer than MaxIDBytes; fieldValues alternate a
// field's name and its value. (A slice, not a map: every event from a
// connector goes through here, and the first field too long is the one
// reported, whatever the run.)
func (v validator) ids(fieldValues ...string) error {
	for i := 0; i+1 < len(fieldValues); i += 2 {
		if value := fieldValues[i+1]; len(value) > MaxIDBytes {
			return v.fail(fieldValues[i], fmt.Sprintf("is %d bytes, more than the %d allowed", len(value), MaxIDBytes))
		}
	}
	return nil
}

// withID checks what chat, sender and contact share once they are there:
// none of their ids (fieldValues as for ids) is too long, and their own id,
// the first pair, is set. One helper for the three keeps their checks in
// the same order: an id too long is reported before a missing one.
func (v validator) withID(fieldValues ...string) error {
	if err := v.ids(fieldValues...); err != nil {
		return err
	}
	if fieldValues[1] == "" {
		return v.fail(fieldValues[0], "is required")
	}
	return nil
}

func (v validator) chat(c *Chat) error {
	if c == nil {
		return v.fail("chat", "is required")
	}
	if err := v.withID("chat.id", c.ID, "chat.with", c.With); err != nil {
		return err
	}
	switch {
	case c.Type == "":
		return v.fail("chat.type", "is required")
	case c.Type == ChatTypeDM && c.With == "":
		// Without the other party the bridge cannot pick the DM's ghost, and
		// is_me messages do not name it anywhere else.
		return v.fail("chat.with", "is required for dm chats")
	}
	return nil
}

func (v validator) sender(s *Sender) error {
	if s == nil {
		return v.fail("sender", "is required")
	}
	return v.withID("sender.id", s.ID)
}

func (v validator) contact(c *Contact) error {
	if c == nil {
		return v.fail("contact", "is required")
	}
	if err := v.withID("contact.id", c.ID); err != nil {
		return err
	}
	switch {
	case c.Avatar != nil && c.Avatar.ID == "":
		return v.fail("contact.avatar.id", "is required when avatar is set")
	case c.Avatar != nil && c.Avatar.URL == "":
		return v.fail("contact.avatar.url", "is required when avatar is set")
	}
	return nil
}

func (v validator) attachment(i int, a *Attachment) error {
	field := func(name string) string { return fmt.Sprintf("attachments[%d].%s", i, name) }
	switch {
	case a.URL == "" && len(a.Data) == 0:
		return v.fail(field("url"), "or data is required")
	case a.URL != "" && len(a.Data) != 0:
		return v.fail(field("data"), "must not be set together with url")
	case len(a.Data) > MaxInlineAttachment:
		return v.fail(field("data"), fmt.Sprintf("is %d bytes, more than the %d allowed inline; use url", len(a.Data), MaxInlineAttachment))
	}
	return nil
}
