package portal

import (
	"context"
	"fmt"
	"io"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// inlineOverhead leaves room in a frame for the command around inline data.
const inlineOverhead = 64 << 10

// messageCommand builds the send_message for a Matrix message. When the
// message cannot go at all (a file over the limit, an encrypted file) it
// returns no command and a notice for the user instead.
func (m *Manager) messageCommand(ctx context.Context, evt *event.Event, login *database.Login, p *database.Portal, content *event.MessageEventContent) (*connector.Command, string, error) {
	cmd := &connector.Command{Login: login.ID, Chat: chatOf(p), Txn: string(evt.ID)}
	if isMedia(content) {
		att, notice, err := m.matrixAttachment(ctx, content)
		if att == nil {
			return nil, notice, err
		}
		cmd.Attachments = []connector.Attachment{*att}
		cmd.Text, cmd.HTML = captionText(content)
	} else {
		text, html := matrixText(content)
		cmd.Text, cmd.HTML = emoteText(content.MsgType, text, html)
	}
	if replyTo := content.RelatesTo.GetReplyTo(); replyTo != "" {
		target, err := m.portalMessage(ctx, p, replyTo)
		if err != nil {
			return nil, "", err
		}
		if target != nil {
			cmd.ReplyTo = target.RemoteID
		} else {
			zerolog.Ctx(ctx).Info().Stringer("reply_to", replyTo).Msg("Reply to an event the bridge does not know, sending it as a plain message")
		}
	}
	return cmd, "", nil
}

func isMedia(content *event.MessageEventContent) bool {
	switch content.MsgType {
	case event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile:
		return true
	}
	return content.URL != "" || content.File != nil
}

// matrixAttachment describes a Matrix file for the connector: small files
// travel inline, larger ones as a path on the connector listener that the
// connector fetches (completed to a URL when the command is sent).
func (m *Manager) matrixAttachment(ctx context.Context, content *event.MessageEventContent) (*connector.Attachment, string, error) {
	name := content.GetFileName()
	if content.File != nil {
		return m.encryptedAttachment(ctx, content)
	}
	uri, err := content.URL.Parse()
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Media message with a bad mxc URL")
		return nil, fmt.Sprintf("⚠️ %q was not delivered: its file address is not valid.", name), nil
	}
	att, notice, err := m.fileAttachment(ctx, name, content.Info, uri, nil)
	if err != nil || notice != "" || att.Data != nil {
		return att, notice, err
	}
	att.URL = connector.MediaPath(uri.Homeserver, uri.FileID)
	return att, "", nil
}

// fileAttachment is a file the user sent, plain or encrypted alike, as its
// event describes it (name, type, size), with its bytes in Data when it is
// small enough to travel inline (passed through decrypt first, when that is
// set). Without Data, the caller passes it by URL: also when the announced
// size understated the file. Instead of an attachment, it answers with the
// notice for a file over bridge.max_media_bytes or one that does not
// decrypt.
func (m *Manager) fileAttachment(ctx context.Context, name string, info *event.FileInfo, uri id.ContentURI,
	decrypt func([]byte) error) (*connector.Attachment, string, error) {
	att := &connector.Attachment{Name: name}
	if info != nil {
		att.MimeType, att.Size = info.MimeType, int64(info.Size)
	}
	if limit := m.cfg.Bridge.MaxMediaBytes; att.Size > limit {
		return nil, fmt.Sprintf("⚠️ %q (%s) was not delivered: it is larger than the bridge's limit of %s.",
			att.Name, humanBytes(att.Size), humanBytes(limit)), nil
	}
	if att.Size <= 0 || att.Size > m.inlineLimit() {
		return att, "", nil
	}
	data, err := m.downloadUpTo(ctx, uri, m.inlineLimit())
	if err != nil {
		return nil, "", err
	}
	if data == nil {
		return att, "", nil
	}
	if decrypt != nil {
		if err := decrypt(data); err != nil {
			return nil, fmt.Sprintf("⚠️ %q was not delivered: it does not decrypt (%v).", name, err), nil
		}
	}
	att.Data, att.Size = data, int64(len(data))
	return att, "", nil
}

// inlineLimit is the largest file sent inline: the configured size, within
// what the protocol allows and what fits a frame once base64-encoded.
func (m *Manager) inlineLimit() int64 {
	limit := min(m.cfg.Bridge.InlineMediaBytes, connector.MaxInlineAttachment)
	if frame := m.cfg.Connector.MaxFrameBytes; frame > 0 {
		limit = min(limit, (frame-inlineOverhead)*3/4)
	}
	return max(limit, 0)
}

// downloadUpTo reads Matrix media of at most limit bytes; nil if it is larger.
func (m *Manager) downloadUpTo(ctx context.Context, uri id.ContentURI, limit int64) ([]byte, error) {
	resp, err := m.mx.Bot().Download(ctx, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", uri, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", uri, err)
	}
	if int64(len(data)) > limit {
		return nil, nil
	}
	return data, nil
}
