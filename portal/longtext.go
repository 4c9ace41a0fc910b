package portal

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"unicode/utf8"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/matrix"
)

// A Matrix event may weigh at most 65536 bytes as a whole (signatures,
// hashes and the envelope included), and homeservers refuse a larger one for
// good. Remote texts are therefore kept well below that: up to
// maxContentBytes of JSON content go as they are, longer ones are split into
// parts of at most maxPartBytes of encoded body each, and a text that would
// need more than maxTextParts parts is sent as a file (with its beginning as
// a text part before it), so a long paste does not flood the room.
const (
	maxContentBytes = 32 << 10
	maxPartBytes    = 24 << 10
	maxTextParts    = 8
	previewBytes    = 2000
)

// fitText returns the Matrix contents that carry content's text: content
// itself if it fits into one event, otherwise parts or a file. The parts
// depend on the text only, so a retry sends the same ones under the same
// transaction ids.
func (m *Manager) fitText(ctx context.Context, intent matrix.API, content *event.MessageEventContent) ([]*event.MessageEventContent, error) {
	if surelyFits(content) {
		return []*event.MessageEventContent{content}, nil
	}
	if encoded, err := json.Marshal(content); err == nil && len(encoded) <= maxContentBytes {
		return []*event.MessageEventContent{content}, nil
	}
	// Formatting cannot be cut at arbitrary points; the parts carry the
	// plain text, which textContent always fills.
	chunks := splitText(content.Body, maxPartBytes)
	if len(chunks) <= maxTextParts {
		parts := make([]*event.MessageEventContent, len(chunks))
		for i, chunk := range chunks {
			parts[i] = &event.MessageEventContent{MsgType: event.MsgText, Body: chunk}
		}
		return parts, nil
	}
	file, err := m.uploadText(ctx, intent, content.Body)
	if err != nil {
		return nil, err
	}
	// The preview is cut from a bounded prefix; a rune broken by that cut
	// lies beyond the first piece.
	preview := splitText(content.Body[:min(len(content.Body), 4*previewBytes)], previewBytes)[0]
	head := &event.MessageEventContent{
		MsgType: event.MsgText,
		Body: fmt.Sprintf("%s…\n\n(This message is %s long; all of it is in the attached file %s.)",
			preview, humanBytes(int64(len(content.Body))), file.FileName),
	}
	return []*event.MessageEventContent{head, file}, nil
}

// surelyFits reports, without encoding it, that content fits in one event
// as fitText weighs it: a text content (textContent sets no field but
// these four) whose strings, even if every byte of them took the most JSON
// can make of a byte (six, as in \u00XX or \ufffd for an invalid one),
// stay under maxContentBytes with the keys and punctuation around them.
// The usual message is far under it, and it was encoded once here and
// again for its send. Any other content is encoded and measured.
func surelyFits(content *event.MessageEventContent) bool {
	n := len(content.MsgType) + len(content.Body) + len(content.Format) + len(content.FormattedBody)
	if 6*n+textKeysBytes > maxContentBytes {
		return false
	}
	rest := *content
	rest.MsgType, rest.Body, rest.Format, rest.FormattedBody = "", "", "", ""
	return reflect.ValueOf(&rest).Elem().IsZero()
}

// textKeysBytes bounds what the JSON of a text content adds to its four
// strings: {"msgtype":"","body":"","format":"","formatted_body":""} is 57.
const textKeysBytes = 64

// fitEdit bounds the text of an edit from the network. An edit replaces
// one event, so it cannot be split like a message: a text too long for one
// event is cut, as plain text, and says so. (The edit's fallback body is
// cut short by setEdit, so the text travels once, in m.new_content.)
func fitEdit(content *event.MessageEventContent) *event.MessageEventContent {
	if encoded, err := json.Marshal(content); err == nil && len(encoded) <= maxContentBytes {
		return content
	}
	return &event.MessageEventContent{MsgType: event.MsgText,
		Body: splitText(content.Body, maxPartBytes)[0] + "… (the rest of this edit is too long to show here)"}
}

// uploadText uploads a long text as a plain text file.
func (m *Manager) uploadText(ctx context.Context, intent matrix.API, text string) (*event.MessageEventContent, error) {
	const name, mime = "message.txt", "text/plain; charset=utf-8"
	resp, err := intent.UploadMedia(ctx, mautrix.ReqUploadMedia{
		ContentBytes: []byte(text), ContentType: mime, FileName: name,
	})
	if err != nil {
		return nil, fmt.Errorf("upload long text: %w", err)
	}
	return &event.MessageEventContent{
		MsgType:  event.MsgFile,
		Body:     name,
		FileName: name,
		URL:      resp.ContentURI.CUString(),
		Info:     &event.FileInfo{MimeType: mime, Size: len(text)},
	}, nil
}

// splitText cuts s into pieces whose JSON string encoding is at most limit
// bytes each; joined, the pieces are s again. A cut goes after the last
// line break or space in the final quarter of a piece when there is one, so
// words stay whole.
func splitText(s string, limit int) []string {
	var out []string
	for len(s) > 0 {
		size, cut, soft := 0, 0, 0
		for cut < len(s) {
			r, n := utf8.DecodeRuneInString(s[cut:])
			w := encodedLen(r, n)
			if size+w > limit {
				break
			}
			size += w
			cut += n
			if (r == '\n' || r == ' ') && size > limit*3/4 {
				soft = cut
			}
		}
		if cut == 0 {
			// limit is smaller than one encoded rune; never loop forever.
			_, cut = utf8.DecodeRuneInString(s)
		} else if cut < len(s) && soft > 0 {
			cut = soft
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	return out
}

// encodedLen is how many bytes encoding/json spends on one rune of a string
// (n bytes long in UTF-8): it escapes quotes, backslashes and control
// characters, and also <, >, &, U+2028, U+2029 and invalid bytes.
func encodedLen(r rune, n int) int {
	switch {
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
		return 2
	case r < 0x20 || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029':
		return 6
	case r == utf8.RuneError && n == 1:
		return 6
	}
	return n
}
