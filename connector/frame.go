package connector

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// writeWait bounds every single write, so a peer that stops reading cannot
// pin a writer forever; the keep-alive then notices the dead peer.
const writeWait = 10 * time.Second

// closeGrace is how long a closing side waits for the peer's close frame
// (or EOF) before it drops the TCP connection. Closing a socket with unread
// input makes the kernel send RST, which can destroy the close frame we just
// sent; reading until the peer closes avoids that.
const closeGrace = 2 * time.Second

// encodeFrame marshals a frame whose data is v (nil for no data).
func encodeFrame(f Frame, v any) ([]byte, error) {
	if v != nil {
		data, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %s data: %w", f.Type, err)
		}
		f.Data = data
	}
	b, err := json.Marshal(&f)
	if err != nil {
		return nil, fmt.Errorf("encode %s frame: %w", f.Type, err)
	}
	return b, nil
}

// errFrame builds an err frame. It cannot fail: Error has only plain fields.
func errFrame(id string, seq int64, e *Error) []byte {
	b, _ := json.Marshal(&Frame{Type: TypeErr, ID: id, Seq: seq, Error: e})
	return b
}

// frameRefs holds whatever id and seq could be read from a frame that failed
// to decode, so the err frame can point at it.
type frameRefs struct {
	ID  string
	Seq int64
}

// salvageRefs reads id and seq from a frame that did not decode as a whole,
// field by field, ignoring fields of the wrong type. Invalid JSON yields
// nothing.
func salvageRefs(msg []byte) frameRefs {
	var fields map[string]json.RawMessage
	if json.Unmarshal(msg, &fields) != nil {
		return frameRefs{}
	}
	var refs frameRefs
	_ = json.Unmarshal(fields["id"], &refs.ID)
	_ = json.Unmarshal(fields["seq"], &refs.Seq)
	return refs
}

// CloseCode returns the websocket close code carried by err, or 0 if err did
// not come from a close frame.
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// closeMessage builds a close frame payload; the reason is cut to fit the
// 123 bytes a control frame leaves for it, at a rune boundary: a reason that
// is not UTF-8 makes the peer's reader fail with a protocol error, and the
// peer never learns the close code (reasons can quote what the peer sent).
func closeMessage(code int, reason string) []byte {
	if len(reason) > 123 {
		cut := 123
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	return websocket.FormatCloseMessage(code, reason)
}

// deadline is the absolute time d from now, for the websocket deadline setters.
func deadline(d time.Duration) time.Time {
	return time.Now().Add(d)
}
