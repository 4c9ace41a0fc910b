package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dmbridge/dmbridge/connector"
)

// unknownOp is an op no protocol version will define.
const unknownOp = "conformance_no_such_op"

// wantErr checks that r is an err frame, optionally with one of codes.
func wantErr(what string, r reply, codes ...string) (string, error) {
	if r.err == nil {
		return "", fmt.Errorf("%s was answered with %s, want an err frame", what, r)
	}
	if len(codes) > 0 && !contains(codes, r.err.Code) {
		return "", fmt.Errorf("%s was answered with err %s (%q), want %s", what, r.err.Code, r.err.Message, strings.Join(codes, " or "))
	}
	return fmt.Sprintf("%s: err %s with id %s", what, r.err.Code, r.id), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// chatOrDummy is a chat to put into commands that must fail anyway.
func (s *suite) chatOrDummy() *connector.Chat {
	if c := s.target.Chat(); c != nil {
		return c
	}
	return &connector.Chat{ID: "conformance-chat", Type: connector.ChatTypeDM, With: "conformance-contact"}
}

func (s *suite) checkUnknownOp(ctx context.Context) (string, error) {
	if err := s.ensure(ctx); err != nil {
		return "", err
	}
	r, err := s.command(ctx, unknownOp, &connector.Command{Login: s.login, Chat: s.chatOrDummy(), Txn: newTxn()})
	if err != nil {
		return "", err
	}
	return wantErr("op "+unknownOp, r)
}

func (s *suite) checkMissingFields(ctx context.Context) (string, error) {
	if err := s.ensure(ctx); err != nil {
		return "", err
	}
	var passed []string

	// Section 2: a frame that misses a required field gets M_BAD_FRAME,
	// with the frame's id when it has one.
	id := s.newID()
	noOp, _ := json.Marshal(map[string]any{"type": connector.TypeCmd, "id": id, "data": map[string]string{"login": s.login}})
	if err := s.sess.sendRaw(noOp); err != nil {
		return "", err
	}
	r, err := s.await(ctx, id)
	if err != nil {
		return "", fmt.Errorf("cmd without op: %w", err)
	}
	p, err := wantErr("cmd without op", r, connector.ErrBadFrame)
	if err != nil {
		return "", err
	}
	passed = append(passed, p)

	s.anonErrs = nil // only an answer to the frame below counts
	noID, _ := json.Marshal(map[string]any{"type": connector.TypeCmd, "op": connector.OpGetContact,
		"data": map[string]string{"login": s.login, "id": "conformance-contact"}})
	if err := s.sess.sendRaw(noID); err != nil {
		return "", err
	}
	e, err := s.awaitAnonErr(ctx)
	if err != nil {
		return "", fmt.Errorf("cmd without id: %w", err)
	}
	if e.Code != connector.ErrBadFrame {
		return "", fmt.Errorf("cmd without id was answered with err %s (%q), want %s", e.Code, e.Message, connector.ErrBadFrame)
	}
	passed = append(passed, "cmd without id: err "+e.Code)

	// The op's own fields: the spec fixes no code, but the answer must be
	// an err, and a result would claim a message sent to no chat.
	r, err = s.command(ctx, connector.OpSendMessage, &connector.Command{Login: s.login, Txn: newTxn()})
	if err != nil {
		return "", fmt.Errorf("send_message without chat and text: %w", err)
	}
	p, err = wantErr("send_message without chat and text", r)
	if err != nil {
		return "", err
	}
	if r.err.Code != connector.ErrBadFrame {
		p += " (section 2 would suggest " + connector.ErrBadFrame + ")"
	}
	passed = append(passed, p)
	return strings.Join(passed, "; "), nil
}

func (s *suite) checkUnknownLogin(ctx context.Context) (string, error) {
	if err := s.ensure(ctx); err != nil {
		return "", err
	}
	r, err := s.command(ctx, connector.OpSendMessage, &connector.Command{
		Login: "conformance-nobody@suite.invalid", Chat: s.chatOrDummy(), Txn: newTxn(), Text: "must not be sent",
	})
	if err != nil {
		return "", err
	}
	return wantErr("send_message for an unknown login", r, connector.ErrNotFound, connector.ErrForbidden)
}

func (s *suite) checkBadFrame(ctx context.Context) (string, error) {
	if err := s.ensure(ctx); err != nil {
		return "", err
	}
	s.anonErrs = nil // only an answer to the frame below counts
	if err := s.sess.sendRaw([]byte(`{"type":"ack","seq":`)); err != nil {
		return "", err
	}
	e, err := s.awaitAnonErr(ctx)
	if err != nil {
		return "", fmt.Errorf("invalid JSON: %w", err)
	}
	if e.Code != connector.ErrBadFrame {
		return "", fmt.Errorf("invalid JSON was answered with err %s (%q), want %s", e.Code, e.Message, connector.ErrBadFrame)
	}

	id := s.newID()
	if err := s.sess.send(connector.Frame{Type: "conformance_no_such_type", ID: id}, nil); err != nil {
		return "", err
	}
	r, err := s.await(ctx, id)
	if err != nil {
		return "", fmt.Errorf("unknown frame type: %w", err)
	}
	p, err := wantErr("unknown frame type", r, connector.ErrUnknownKind)
	if err != nil {
		return "", err
	}

	// Still connected and still serving commands?
	r, err = s.command(ctx, unknownOp, &connector.Command{Login: s.login, Txn: newTxn()})
	if err != nil {
		return "", fmt.Errorf("after the bad frames: %w", err)
	}
	if r.err == nil {
		return "", fmt.Errorf("after the bad frames, op %s was answered with %s", unknownOp, r)
	}
	return "invalid JSON: err " + e.Code + "; " + p + "; the connection stayed up and kept answering commands", nil
}
