package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dmbridge/dmbridge/connector"
)

// historyLimit is the limit the history check asks for.
const historyLimit = 5

// checkHistory asks for what the connector's capabilities promise about
// history: backfill of the target's chat (messages that are valid message
// events of that chat, oldest first, at most limit) and list_chats (valid
// dm chats, each once, at most limit). A connector promising neither is
// skipped.
func (s *suite) checkHistory(ctx context.Context) (string, error) {
	caps := s.hello.Capabilities
	if !caps.Backfill && !caps.ListChats {
		return "", skip("the connector offers neither backfill nor list_chats")
	}
	var passed []string
	if caps.Backfill {
		if s.target.Chat() == nil {
			passed = append(passed, "backfill not tried: the target names no chat")
		} else {
			p, err := s.checkBackfill(ctx)
			if err != nil {
				return "", err
			}
			passed = append(passed, p)
		}
	}
	if caps.ListChats {
		p, err := s.checkListChats(ctx)
		if err != nil {
			return "", err
		}
		passed = append(passed, p)
	}
	return strings.Join(passed, "; "), nil
}

func (s *suite) checkBackfill(ctx context.Context) (string, error) {
	chat := s.target.Chat()
	res, err := s.historyResult(ctx, connector.OpBackfill, &connector.Command{Login: s.login, Chat: chat, Limit: historyLimit})
	if err != nil {
		return "", err
	}
	if len(res.Messages) > historyLimit {
		return "", fmt.Errorf("backfill with limit %d returned %d messages", historyLimit, len(res.Messages))
	}
	var last int64
	for i, ev := range res.Messages {
		if ev.Kind == "" {
			ev.Kind = connector.KindMessage
		}
		// The bridge sets both to the portal's (docs/connector-protocol.md
		// 7.5), so a connector may leave them out.
		if ev.Login == "" {
			ev.Login = s.login
		}
		if ev.Chat == nil {
			ev.Chat = chat
		}
		if err := ev.Validate(); err != nil || ev.Kind != connector.KindMessage || ev.ID == "" {
			return "", fmt.Errorf("backfill message %d (id %q) is not a valid message event: %v", i, ev.ID, err)
		}
		if ev.Chat.ID != chat.ID {
			return "", fmt.Errorf("backfill of chat %q returned message %q of chat %q", chat.ID, ev.ID, ev.Chat.ID)
		}
		if ev.TS != 0 && ev.TS < last {
			return "", fmt.Errorf("backfill messages are not oldest first: %q (ts %d) after ts %d", ev.ID, ev.TS, last)
		}
		last = max(last, ev.TS)
	}
	return fmt.Sprintf("backfill of %s: %d valid messages, oldest first", chat.ID, len(res.Messages)), nil
}

// historyResult sends a history command, whose op is also the name of the
// capability that promises it, and decodes the result it must be answered
// with.
func (s *suite) historyResult(ctx context.Context, op string, cmd *connector.Command) (*connector.Result, error) {
	r, err := s.commandRetrying(ctx, op, cmd)
	if err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s (capability %s) was answered %s", op, op, r)
	}
	var res connector.Result
	if err := json.Unmarshal(r.res, &res); err != nil {
		return nil, fmt.Errorf("%s answer does not decode: %w", op, err)
	}
	return &res, nil
}

func (s *suite) checkListChats(ctx context.Context) (string, error) {
	res, err := s.historyResult(ctx, connector.OpListChats, &connector.Command{Login: s.login, Limit: historyLimit})
	if err != nil {
		return "", err
	}
	if len(res.Chats) > historyLimit {
		return "", fmt.Errorf("list_chats with limit %d returned %d chats", historyLimit, len(res.Chats))
	}
	seen := map[string]bool{}
	for _, c := range res.Chats {
		if c.ID == "" || c.Type == "" || (c.Type == connector.ChatTypeDM && c.With == "") {
			return "", fmt.Errorf("list_chats returned an incomplete chat %+v", c)
		}
		if seen[c.ID] {
			return "", fmt.Errorf("list_chats named chat %q twice", c.ID)
		}
		seen[c.ID] = true
	}
	return fmt.Sprintf("list_chats: %d chats, each once", len(res.Chats)), nil
}
