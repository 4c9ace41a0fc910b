package xmppconnector

import (
	"context"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/dmbridge/dmbridge/connector"
)

// outMessage is every message stanza the connector sends. Stanzas made
// for a bridge command carry the command's txn as id and origin-id, so
// the archive copy can be recognised and receivers can drop a resend.
type outMessage struct {
	XMLName   xml.Name     `xml:"message"`
	To        string       `xml:"to,attr"`
	ID        string       `xml:"id,attr"`
	Type      string       `xml:"type,attr"`
	Body      string       `xml:"body,omitempty"`
	OOB       *oobOut      `xml:"jabber:x:oob x"`
	OriginID  *idEl        `xml:"urn:xmpp:sid:0 origin-id"`
	Replace   *idEl        `xml:"urn:xmpp:message-correct:0 replace"`
	Retract   *idEl        `xml:"urn:xmpp:message-retract:1 retract"`
	Reactions *reactionsEl `xml:"urn:xmpp:reactions:0 reactions"`
	Reply     *replyEl     `xml:"urn:xmpp:reply:0 reply"`
	Fallback  *struct {
		For string `xml:"for,attr"`
	} `xml:"urn:xmpp:fallback:0 fallback"`
	Displayed *idEl     `xml:"urn:xmpp:chat-markers:0 displayed"`
	Markable  *struct{} `xml:"urn:xmpp:chat-markers:0 markable"`
	ChatState *anyEl
	Store     *struct{} `xml:"urn:xmpp:hints store"`
	NoStore   *struct{} `xml:"urn:xmpp:hints no-store"`
}

func chatState(name string) *anyEl {
	return &anyEl{XMLName: xml.Name{Space: nsChatStates, Local: name}}
}

// errOffline answers commands while the XMPP stream is down; the bridge
// retries them.
var errOffline = &connector.Error{Code: connector.ErrNetwork, Message: "not connected to the XMPP server", Retryable: true}

func badRequest(format string, args ...any) error {
	return &connector.Error{Code: "M_BAD_REQUEST", Message: fmt.Sprintf(format, args...)}
}

// command runs one bridge command for this account.
func (a *account) command(ctx context.Context, op string, cmd *connector.Command) (*connector.Result, error) {
	switch op {
	case connector.OpResolveIdentifier:
		return a.resolveIdentifier(ctx, cmd)
	case connector.OpGetContact:
		return a.getContact(ctx, cmd)
	case connector.OpSetPresence:
		return a.setPresence(ctx, cmd)
	case connector.OpBackfill:
		return a.backfill(ctx, cmd)
	case connector.OpListChats:
		return a.listChats(ctx, cmd)
	}
	peer, conn, err := a.chatConn(cmd.Chat)
	if err != nil {
		return nil, err
	}
	id := cmd.Txn
	if id == "" {
		id = newID()
	}
	msg := outMessage{To: peer, ID: id, Type: "chat", OriginID: &idEl{ID: id}}
	var eff *effects
	res := &connector.Result{}
	switch op {
	case connector.OpSendMessage:
		if len(cmd.Attachments) > 0 {
			return a.sendFiles(ctx, conn, peer, id, cmd)
		}
		if cmd.Text == "" {
			return nil, badRequest("send_message needs text")
		}
		msg.Body, msg.Markable, msg.ChatState = cmd.Text, &struct{}{}, chatState("active")
		if cmd.ReplyTo != "" {
			to, err := a.store.XMPPID(ctx, a.login, peer, cmd.ReplyTo)
			if err != nil {
				return nil, err
			}
			msg.Reply = &replyEl{To: peer, ID: to}
		}
		eff = &effects{login: a.login, refs: []msgRef{{chat: peer, bridgeID: id, xmppID: id, author: a.login}}}
		res.ID, res.TS = id, time.Now().UnixMilli()
	case connector.OpEditMessage:
		if cmd.Text == "" || cmd.Target == "" {
			return nil, badRequest("edit_message needs target and text")
		}
		target, err := a.store.XMPPID(ctx, a.login, peer, cmd.Target)
		if err != nil {
			return nil, err
		}
		msg.Body, msg.Replace = cmd.Text, &idEl{ID: target}
		eff = &effects{login: a.login, refs: []msgRef{{chat: peer, bridgeID: id, xmppID: id, author: a.login}}}
		res.ID = id
	case connector.OpDeleteMessage:
		target, err := a.store.XMPPID(ctx, a.login, peer, cmd.Target)
		if err != nil {
			return nil, err
		}
		msg.Retract = &idEl{ID: target}
		msg.Fallback = &struct {
			For string `xml:"for,attr"`
		}{For: nsRetract}
		msg.Body = "This person attempted to retract a previous message, but it's unsupported by your client."
		msg.Store = &struct{}{}
	case connector.OpReact, connector.OpUnreact:
		if cmd.Target == "" || cmd.Key == "" {
			return nil, badRequest("%s needs target and key", op)
		}
		keys, err := a.store.Reactions(ctx, a.login, peer, cmd.Target, a.login)
		if err != nil {
			return nil, err
		}
		// The user's other client may have set reactions the bridge left
		// out; the mark that the user was told of them is no key.
		keys = slices.DeleteFunc(keys, func(k string) bool { return k == toldReactionLeftOut })
		if op == connector.OpReact && !slices.Contains(keys, cmd.Key) {
			keys = append(keys, cmd.Key)
		} else if op == connector.OpUnreact {
			keys = slices.DeleteFunc(keys, func(k string) bool { return k == cmd.Key })
		}
		target, err := a.store.XMPPID(ctx, a.login, peer, cmd.Target)
		if err != nil {
			return nil, err
		}
		// XEP-0444 sends the complete set every time.
		msg.Reactions, msg.Store = &reactionsEl{ID: target, Reactions: keys}, &struct{}{}
		eff = &effects{login: a.login, reactions: &reactionSet{chat: peer, target: cmd.Target, sender: a.login, keys: keys}}
		res.ID = id
	case connector.OpMarkRead:
		target, err := a.store.XMPPID(ctx, a.login, peer, cmd.UpTo)
		if err != nil {
			return nil, err
		}
		msg.OriginID, msg.Displayed, msg.Store = nil, &idEl{ID: target}, &struct{}{}
	case connector.OpSetTyping:
		state := "paused"
		if cmd.Typing {
			state = "composing"
		}
		msg.OriginID, msg.ChatState, msg.NoStore = nil, chatState(state), &struct{}{}
	default:
		return nil, &connector.Error{Code: connector.ErrUnsupported, Message: fmt.Sprintf("unknown op %q", op)}
	}
	if err := conn.send(ctx, msg); err != nil {
		// Sent or not is unknowable; a retry carries the same origin-id.
		return nil, &connector.Error{Code: connector.ErrNetwork, Message: err.Error(), Retryable: true}
	}
	if eff != nil {
		if err := a.store.Apply(ctx, eff); err != nil {
			a.log.Error().Err(err).Str("op", op).Msg("Sent, but could not record it")
		}
	}
	return res, nil
}

// chatPeer checks a command's chat and returns the contact's bare JID.
func chatPeer(chat *connector.Chat) (string, error) {
	if chat == nil || chat.ID == "" {
		return "", badRequest("chat is required")
	}
	if chat.Type != "" && chat.Type != connector.ChatTypeDM {
		return "", &connector.Error{Code: connector.ErrUnsupported, Message: "only dm chats are bridged"}
	}
	peer := bareOf(chat.ID)
	if peer == "" || !strings.Contains(peer, "@") {
		return "", &connector.Error{Code: connector.ErrNotFound, Message: fmt.Sprintf("%q is not an XMPP address", chat.ID)}
	}
	return peer, nil
}

// parseAddress accepts what a person types for an XMPP contact: a JID,
// optionally as an xmpp: URI.
func parseAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "xmpp:")
	s, _, _ = strings.Cut(s, "?")
	j, err := jid.Parse(s)
	if err != nil || j.Localpart() == "" {
		return "", &connector.Error{Code: connector.ErrNotFound, Message: fmt.Sprintf("%q is not an XMPP address (user@server)", s)}
	}
	return j.Bare().String(), nil
}

func (a *account) resolveIdentifier(ctx context.Context, cmd *connector.Command) (*connector.Result, error) {
	who, conn, c, err := a.lookupContact(ctx, cmd.Identifier)
	if err != nil {
		return nil, err
	}
	if cmd.Create {
		// Adding a contact in XMPP means asking for its presence.
		if err := conn.send(ctx, presenceOut{To: who, Type: "subscribe"}); err != nil {
			return nil, &connector.Error{Code: connector.ErrNetwork, Message: err.Error(), Retryable: true}
		}
	}
	return &connector.Result{Contact: c, Chat: &connector.Chat{ID: who, Type: connector.ChatTypeDM, With: who}}, nil
}

func (a *account) getContact(ctx context.Context, cmd *connector.Command) (*connector.Result, error) {
	_, _, c, err := a.lookupContact(ctx, cmd.ID)
	if err != nil {
		return nil, err
	}
	return &connector.Result{Contact: c}, nil
}

// lookupContact parses an address and fetches its profile on the current
// connection, answering with the protocol errors both commands share.
func (a *account) lookupContact(ctx context.Context, address string) (string, *xmppConn, *connector.Contact, error) {
	who, err := parseAddress(address)
	if err != nil {
		return "", nil, nil, err
	}
	conn, err := a.live()
	if err != nil {
		return "", nil, nil, err
	}
	c, err := a.fetchContact(ctx, conn, who)
	if err != nil {
		return "", nil, nil, &connector.Error{Code: connector.ErrNetwork, Message: err.Error(), Retryable: true}
	}
	return who, conn, c, nil
}

func (a *account) setPresence(ctx context.Context, cmd *connector.Command) (*connector.Result, error) {
	show := ""
	switch cmd.Presence {
	case connector.PresenceOnline, "":
	case connector.PresenceUnavailable:
		show = "away"
	case connector.PresenceOffline:
		// Unavailable presence would stop delivery to this client; extended
		// away is as offline as a connected bridge can look.
		show = "xa"
	default:
		return nil, badRequest("unknown presence %q", cmd.Presence)
	}
	a.mu.Lock()
	a.show, a.status = show, cmd.StatusMsg
	a.mu.Unlock()
	conn := a.current()
	if conn == nil {
		// Applied with the next connection's initial presence.
		return &connector.Result{}, nil
	}
	if err := conn.send(ctx, a.ownPresence(conn)); err != nil {
		return nil, &connector.Error{Code: connector.ErrNetwork, Message: err.Error(), Retryable: true}
	}
	return &connector.Result{}, nil
}
