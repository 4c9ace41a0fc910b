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

// rawWantErr sends raw, a frame with the given id whatever else it holds,
// and checks that the connector answers that id with an err frame,
// optionally with one of codes.
func (s *suite) rawWantErr(ctx context.Context, what, id string, raw []byte, codes ...string) (string, error) {
	if err := s.sess.sendRaw(raw); err != nil {
		return "", err
	}
	r, err := s.await(ctx, id)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return wantErr(what, r, codes...)
}

// rawWantAnonBadFrame sends raw, a frame with no id to answer by, and
// checks that the connector answers with an err frame without id carrying
// M_BAD_FRAME.
func (s *suite) rawWantAnonBadFrame(ctx context.Context, what string, raw []byte) (string, error) {
	s.anonErrs = nil // only an answer to this frame counts
	if err := s.sess.sendRaw(raw); err != nil {
		return "", err
	}
	e, err := s.awaitAnonErr(ctx)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if e.Code != connector.ErrBadFrame {
		return "", fmt.Errorf("%s was answered with err %s (%q), want %s", what, e.Code, e.Message, connector.ErrBadFrame)
	}
	return what + ": err " + e.Code, nil
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
	r, err := s.command(ctx, unknownOp, &connector.Command{Login: s.login, Chat: s.chatOrDummy(), Txn: newTxn()})
	if err != nil {
		return "", err
	}
	return wantErr("op "+unknownOp, r)
}

func (s *suite) checkMissingFields(ctx context.Context) (string, error) {
	var passed []string

	// Section 2: a frame that misses a required field gets M_BAD_FRAME,
	// with the frame's id when it has one.
	id := s.newID()
	noOp, _ := json.Marshal(map[string]any{"type": connector.TypeCmd, "id": id, "data": map[string]string{"login": s.login}})
	p, err := s.rawWantErr(ctx, "cmd without op", id, noOp, connector.ErrBadFrame)
	if err != nil {
		return "", err
	}
	passed = append(passed, p)

	noID, _ := json.Marshal(map[string]any{"type": connector.TypeCmd, "op": connector.OpGetContact,
		"data": map[string]string{"login": s.login, "id": "conformance-contact"}})
	p, err = s.rawWantAnonBadFrame(ctx, "cmd without id", noID)
	if err != nil {
		return "", err
	}
	passed = append(passed, p)

	// The op's own fields: the spec fixes no code, but the answer must be
	// an err, and a result would claim a message sent to no chat.
	r, err := s.command(ctx, connector.OpSendMessage, &connector.Command{Login: s.login, Txn: newTxn()})
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
	r, err := s.command(ctx, connector.OpSendMessage, &connector.Command{
		Login: "conformance-nobody@suite.invalid", Chat: s.chatOrDummy(), Txn: newTxn(), Text: "must not be sent",
	})
	if err != nil {
		return "", err
	}
	return wantErr("send_message for an unknown login", r, connector.ErrNotFound, connector.ErrForbidden)
}

func (s *suite) checkBadFrame(ctx context.Context) (string, error) {
	badJSON, err := s.rawWantAnonBadFrame(ctx, "invalid JSON", []byte(`{"type":"ack","seq":`))
	if err != nil {
		return "", err
	}

	id := s.newID()
	unknownType, _ := json.Marshal(&connector.Frame{Type: "conformance_no_such_type", ID: id})
	p, err := s.rawWantErr(ctx, "unknown frame type", id, unknownType, connector.ErrUnknownKind)
	if err != nil {
		return "", err
	}

	// Still connected and still serving commands?
	r, err := s.command(ctx, unknownOp, &connector.Command{Login: s.login, Txn: newTxn()})
	if err != nil {
		return "", fmt.Errorf("after the bad frames: %w", err)
	}
	if r.err == nil {
		return "", fmt.Errorf("after the bad frames, op %s was answered with %s", unknownOp, r)
	}
	return badJSON + "; " + p + "; the connection stayed up and kept answering commands", nil
}
