package connector

import (
	"errors"
	"strings"
	"testing"
)

func dmChatV() *Chat { return &Chat{ID: "c1", Type: ChatTypeDM, With: "bob"} }

func bobV() *Sender { return &Sender{ID: "bob"} }

func TestEventValidate(t *testing.T) {
	ok := map[string]Event{
		"message text": {Kind: KindMessage, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "m1", Text: "hi"},
		"message html": {Kind: KindMessage, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "m1", HTML: "<b>hi</b>"},
		"message file": {Kind: KindMessage, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "m1",
			Attachments: []Attachment{{Name: "f", URL: "https://x/f"}, {Name: "g", Data: make([]byte, MaxInlineAttachment)}}},
		"edit":            {Kind: KindEdit, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "e1", Target: "m1", Text: "hi!"},
		"delete":          {Kind: KindDelete, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "d1", Target: "m1"},
		"reaction":        {Kind: KindReaction, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "r1", Target: "m1", Key: "👍"},
		"reaction_remove": {Kind: KindReactionRemove, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "r2", Target: "m1", Key: "👍"},
		"read_receipt":    {Kind: KindReadReceipt, Login: "a", Chat: dmChatV(), Sender: bobV(), UpTo: "m1"},
		"contact":         {Kind: KindContact, Login: "a", Contact: &Contact{ID: "bob", Avatar: &Avatar{ID: "v1", URL: "https://x/a"}}},
		"chat_deleted":    {Kind: KindChatDeleted, Login: "a", Chat: dmChatV()},
		"login":           {Kind: KindLogin, Login: "a", State: LoginBadCredentials},
		"non-dm chat":     {Kind: KindChatDeleted, Login: "a", Chat: &Chat{ID: "g", Type: "group"}},
	}
	for name, ev := range ok {
		if err := ev.Validate(); err != nil {
			t.Errorf("%s: unexpected error %v", name, err)
		}
	}

	bad := []struct {
		name  string
		ev    Event
		field string
	}{
		{"no kind", Event{Login: "a"}, "kind"},
		{"unknown kind", Event{Kind: "poll", Login: "a"}, "kind"},
		{"no login", Event{Kind: KindLogin, State: LoginConnected}, "login"},
		{"no chat", Event{Kind: KindMessage, Login: "a", Sender: bobV(), ID: "m", Text: "x"}, "chat"},
		{"no chat id", Event{Kind: KindMessage, Login: "a", Chat: &Chat{Type: "dm", With: "b"}, Sender: bobV(), ID: "m", Text: "x"}, "chat.id"},
		{"no chat type", Event{Kind: KindChatDeleted, Login: "a", Chat: &Chat{ID: "c"}}, "chat.type"},
		{"dm without with", Event{Kind: KindChatDeleted, Login: "a", Chat: &Chat{ID: "c", Type: "dm"}}, "chat.with"},
		{"no sender", Event{Kind: KindMessage, Login: "a", Chat: dmChatV(), ID: "m", Text: "x"}, "sender"},
		{"no sender id", Event{Kind: KindDelete, Login: "a", Chat: dmChatV(), Sender: &Sender{IsMe: true}, ID: "d", Target: "m"}, "sender.id"},
		{"no id", Event{Kind: KindMessage, Login: "a", Chat: dmChatV(), Sender: bobV(), Text: "x"}, "id"},
		{"empty message", Event{Kind: KindMessage, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "m"}, "text"},
		{"attachment without source", Event{Kind: KindMessage, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "m",
			Attachments: []Attachment{{Name: "f", URL: "u"}, {Name: "g"}}}, "attachments[1].url"},
		{"attachment with both", Event{Kind: KindMessage, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "m",
			Attachments: []Attachment{{Name: "f", URL: "u", Data: []byte{1}}}}, "attachments[0].data"},
		{"attachment too big", Event{Kind: KindMessage, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "m",
			Attachments: []Attachment{{Name: "f", Data: make([]byte, MaxInlineAttachment+1)}}}, "attachments[0].data"},
		{"too many attachments", Event{Kind: KindMessage, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "m",
			Attachments: make([]Attachment, MaxAttachments+1)}, "attachments"},
		{"id too long", Event{Kind: KindMessage, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: strings.Repeat("m", MaxIDBytes+1), Text: "x"}, "id"},
		{"chat id too long", Event{Kind: KindChatDeleted, Login: "a", Chat: &Chat{ID: strings.Repeat("c", MaxIDBytes+1), Type: "dm", With: "b"}}, "chat.id"},
		{"sender id too long", Event{Kind: KindDelete, Login: "a", Chat: dmChatV(), Sender: &Sender{ID: strings.Repeat("s", MaxIDBytes+1)}, ID: "d", Target: "m"}, "sender.id"},
		{"contact id too long", Event{Kind: KindContact, Login: "a", Contact: &Contact{ID: strings.Repeat("b", MaxIDBytes+1)}}, "contact.id"},
		{"reaction key too long", Event{Kind: KindReaction, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "r", Target: "m", Key: strings.Repeat("k", MaxIDBytes+1)}, "key"},
		{"edit without target", Event{Kind: KindEdit, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "e", Text: "x"}, "target"},
		{"edit without text", Event{Kind: KindEdit, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "e", Target: "m"}, "text"},
		{"delete without target", Event{Kind: KindDelete, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "d"}, "target"},
		{"reaction without key", Event{Kind: KindReaction, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "r", Target: "m"}, "key"},
		{"reaction_remove without key", Event{Kind: KindReactionRemove, Login: "a", Chat: dmChatV(), Sender: bobV(), ID: "r", Target: "m"}, "key"},
		{"reaction without id", Event{Kind: KindReaction, Login: "a", Chat: dmChatV(), Sender: bobV(), Target: "m", Key: "k"}, "id"},
		{"receipt without up_to", Event{Kind: KindReadReceipt, Login: "a", Chat: dmChatV(), Sender: bobV()}, "up_to"},
		{"receipt without sender", Event{Kind: KindReadReceipt, Login: "a", Chat: dmChatV(), UpTo: "m"}, "sender"},
		{"contact missing", Event{Kind: KindContact, Login: "a"}, "contact"},
		{"contact without id", Event{Kind: KindContact, Login: "a", Contact: &Contact{Name: "Bob"}}, "contact.id"},
		{"avatar without id", Event{Kind: KindContact, Login: "a", Contact: &Contact{ID: "b", Avatar: &Avatar{URL: "u"}}}, "contact.avatar.id"},
		{"chat_deleted without chat", Event{Kind: KindChatDeleted, Login: "a"}, "chat"},
		{"login without state", Event{Kind: KindLogin, Login: "a"}, "state"},
		{"login bad state", Event{Kind: KindLogin, Login: "a", State: "sleepy"}, "state"},
	}
	for _, tc := range bad {
		err := tc.ev.Validate()
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: want *ValidationError, got %v", tc.name, err)
			continue
		}
		if ve.Field != tc.field {
			t.Errorf("%s: field %q, want %q (%v)", tc.name, ve.Field, tc.field, err)
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: message %q does not name %q", tc.name, err, tc.field)
		}
	}
}

func TestEphemeralValidate(t *testing.T) {
	ok := []Ephemeral{
		{Kind: KindTyping, Login: "a", Chat: dmChatV(), Sender: bobV(), Typing: true, TimeoutMS: 30000},
		{Kind: KindPresence, Login: "a", Contact: "bob", Presence: PresenceUnavailable, StatusMsg: "lunch"},
	}
	for _, e := range ok {
		if err := e.Validate(); err != nil {
			t.Errorf("%s: unexpected error %v", e.Kind, err)
		}
	}
	bad := []struct {
		e     Ephemeral
		field string
	}{
		{Ephemeral{Login: "a"}, "kind"},
		{Ephemeral{Kind: "mood", Login: "a"}, "kind"},
		{Ephemeral{Kind: KindTyping, Chat: dmChatV(), Sender: bobV()}, "login"},
		{Ephemeral{Kind: KindTyping, Login: "a", Sender: bobV()}, "chat"},
		{Ephemeral{Kind: KindTyping, Login: "a", Chat: dmChatV()}, "sender"},
		{Ephemeral{Kind: KindTyping, Login: "a", Chat: dmChatV(), Sender: bobV(), TimeoutMS: -1}, "timeout_ms"},
		{Ephemeral{Kind: KindPresence, Login: "a", Presence: PresenceOnline}, "contact"},
		{Ephemeral{Kind: KindPresence, Login: "a", Contact: "b"}, "presence"},
		{Ephemeral{Kind: KindPresence, Login: "a", Contact: "b", Presence: "away"}, "presence"},
		{Ephemeral{Kind: KindPresence, Login: "a", Contact: "b", Presence: PresenceOnline, StatusMsg: strings.Repeat("x", MaxStatusMsgBytes+1)}, "status_msg"},
	}
	for _, tc := range bad {
		var ve *ValidationError
		if err := tc.e.Validate(); !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%+v: want error on %q, got %v", tc.e, tc.field, err)
		}
	}
}

func TestKnownKinds(t *testing.T) {
	for _, k := range []string{KindMessage, KindEdit, KindDelete, KindReaction, KindReactionRemove,
		KindReadReceipt, KindContact, KindChatDeleted, KindLogin} {
		if !IsKnownEventKind(k) || IsKnownEphemeralKind(k) {
			t.Errorf("event kind %q misclassified", k)
		}
	}
	for _, k := range []string{KindTyping, KindPresence} {
		if !IsKnownEphemeralKind(k) || IsKnownEventKind(k) {
			t.Errorf("ephemeral kind %q misclassified", k)
		}
	}
	for _, k := range []string{"", "poll", "Message"} {
		if IsKnownEventKind(k) || IsKnownEphemeralKind(k) {
			t.Errorf("%q should be unknown", k)
		}
	}
}
