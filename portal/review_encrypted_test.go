package portal

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// encryptedReaction is an m.room.encrypted reaction as clients send it: the
// relation stays in clear (the spec keeps m.relates_to unencrypted so that
// servers can aggregate), only the key and type are in the ciphertext.
func encryptedReaction(target string) map[string]any {
	return map[string]any{"type": "m.room.encrypted", "content": map[string]any{
		"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnAc", "sender_key": "c2VuZGVy",
		"session_id": "c2Vzc2lvbg", "device_id": "PHONE",
		"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": target, "key": "👍"}}}
}

// TestParkedEncryptedReactionIsCalledReaction: an encrypted reaction the
// bridge gives up on (applyMatrix's giveUp: e.g. Decrypt failing with
// something other than ErrUndecryptable five times, such as the ghost
// device's store) is answered by noticeMatrixFailure with the stored row,
// whose data is the m.room.encrypted event: mxEventNoun calls it a
// "message", although its m.relates_to, which stays in clear, says it is a
// reaction. The user reads "Your message was not delivered" as a reply to
// their reaction.
func TestParkedEncryptedReactionIsCalledReaction(t *testing.T) {
	u, room, _ := queuedRelationsUnit(t)
	row := u.userEvent(t, room, "$r", encryptedReaction("$m"))
	u.m.noticeMatrixFailure(context.Background(), row, errors.New("the ghost's device could not be loaded"))
	n := u.notices(t)
	if len(n) != 1 {
		t.Fatalf("notices %q, want one", n)
	}
	if !strings.HasPrefix(n[0], "⚠️ Your reaction was not delivered") {
		t.Errorf("notice %q about the user's reaction; want it called a reaction", n[0])
	}
}

// TestUndecryptableReactionIsCalledReaction: the notices of matrixEncrypted
// (encryption off, or the key never came) say "Your message" whatever the
// event was; a reaction's relation is in clear and says what it is.
func TestUndecryptableReactionIsCalledReaction(t *testing.T) {
	u, room, _ := queuedRelationsUnit(t)
	u.handle(t, room, "$r", encryptedReaction("$m"))
	n := u.notices(t)
	if len(n) != 1 || !strings.HasPrefix(n[0], "⚠️ Your reaction was not delivered") {
		t.Errorf("notices %q about the user's encrypted reaction; want it called a reaction", n)
	}
}
