package bridge_test

import (
	"bytes"
	"context"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestStickerPollAndCallFromElement: what Element puts into a DM besides
// messages. A sticker reaches bob's network as the picture; a poll and a
// call cannot, so alice is told in the room rather than left waiting for
// answers or a ring; a key verification request, meant for bob's client,
// goes nowhere and says nothing.
func TestStickerPollAndCallFromElement(t *testing.T) {
	s, f, roomID, _ := newFidPortal(t, testdb.SQLite(t), "m1", "hello alice")
	ctx := context.Background()
	picture := []byte("\x89PNG\r\n\x1a\n a sticker")
	up, err := s.alice.UploadBytes(ctx, picture, "image/png")
	if err != nil {
		t.Fatal(err)
	}
	sticker, err := s.alice.SendMessageEvent(ctx, roomID, event.EventSticker, map[string]any{
		"body": "a happy cat", "url": up.ContentURI.String(), "info": map[string]any{"mimetype": "image/png", "size": len(picture)}})
	if err != nil {
		t.Fatal(err)
	}
	cmd := f.fidWaitCommand(connector.OpSendMessage, func(c *connector.Command) bool { return c.Txn == string(sticker.EventID) })
	if len(cmd.Attachments) != 1 || !bytes.Equal(cmd.Attachments[0].Data, picture) {
		t.Errorf("send_message for the sticker = %+v; want its picture", cmd)
	}
	verify := map[string]any{"msgtype": "m.key.verification.request", "body": "verify me", "from_device": "D",
		"methods": []string{"m.sas.v1"}, "to": string(s.ghost(fidBob))}
	for _, e := range []struct {
		typ     event.Type
		content map[string]any
	}{
		{event.EventMessage, verify},
		{event.Type{Type: "org.matrix.msc3381.poll.start", Class: event.MessageEventType}, map[string]any{
			"org.matrix.msc3381.poll.start": map[string]any{"question": map[string]any{"org.matrix.msc1767.text": "lunch?"},
				"answers": []any{map[string]any{"id": "a", "org.matrix.msc1767.text": "yes"}}}}},
		{event.Type{Type: "m.call.invite", Class: event.MessageEventType}, map[string]any{
			"call_id": "c1", "version": "1", "lifetime": 60000, "offer": map[string]any{"type": "offer", "sdp": "v=0"}}},
	} {
		if _, err := s.alice.SendMessageEvent(ctx, roomID, e.typ, e.content); err != nil {
			t.Fatal(err)
		}
	}
	s.fidNotice(roomID, "Your poll was not delivered", "does not support polls")
	s.fidNotice(roomID, "Calls are not bridged")
	s.fidSendText(roomID, "sentinel")
	for _, c := range f.commandsOf(connector.OpSendMessage) {
		if c.Text == "verify me" {
			t.Errorf("the verification request went to bob's network as text: %+v", c)
		}
	}
}
