package bridge_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// TestXMPPFileFromMatrix: alice sends a file from her Matrix client; bob's
// XMPP client gets it the way XMPP clients share files (an out-of-band link
// with origin-id = the Matrix event id), and the link serves the same bytes.
func TestXMPPFileFromMatrix(t *testing.T) {
	x, room := newXMPPChat(t, "send me the picture")
	ctx := context.Background()

	data := bytes.Repeat([]byte("dmbridge file test "), 40000) // 760 KB: sent by URL, not inline
	up, err := x.alice.UploadMedia(ctx, mautrix.ReqUploadMedia{
		ContentBytes: data, ContentType: "application/octet-stream", FileName: "notes.bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := x.aliceSends(room, &event.MessageEventContent{
		MsgType: event.MsgFile, Body: "notes.bin", URL: up.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "application/octet-stream", Size: len(data)},
	})
	got := x.bobGets(func(m *testxmpp.Message) bool { return m.OOB != "" })
	if got.OriginID != string(sent) {
		t.Errorf("file message origin-id %q, want the Matrix event id %s", got.OriginID, sent)
	}
	_, fetched := httpGet(t, got.OOB)
	if sha256.Sum256(fetched) != sha256.Sum256(data) {
		t.Errorf("the shared link serves %d bytes that differ from the %d sent", len(fetched), len(data))
	}
	x.noMoreFor("the file", func(m *testxmpp.Message) bool { return m.OOB != "" })
}
