// Package connws holds the websocket details of the connector protocol that
// the bridge's server, the SDK and the test tools share: frame encoding,
// err frames, close frames, deadlines and the URL a connector dials.
package connws

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
)

// writeWait bounds every single write, so a peer that stops reading cannot
// pin a writer forever; the keep-alive then notices the dead peer.
const WriteWait = 10 * time.Second

// closeGrace is how long a closing side waits for the peer's close frame
// (or EOF) before it drops the TCP connection. Closing a socket with unread
// input makes the kernel send RST, which can destroy the close frame we just
// sent; reading until the peer closes avoids that.
const CloseGrace = 2 * time.Second

// encodeFrame marshals a frame whose data is v (nil for no data).
func EncodeFrame(f connector.Frame, v any) ([]byte, error) {
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
func ErrFrame(id string, seq int64, e *connector.Error) []byte {
	b, _ := json.Marshal(&connector.Frame{Type: connector.TypeErr, ID: id, Seq: seq, Error: e})
	return b
}

// frameRefs holds whatever id and seq could be read from a frame that failed
// to decode, so the err frame can point at it.
type Refs struct {
	ID  string
	Seq int64
}

// salvageRefs reads id and seq from a frame that did not decode as a whole,
// field by field, ignoring fields of the wrong type. Invalid JSON yields
// nothing.
func SalvageRefs(msg []byte) Refs {
	var fields map[string]json.RawMessage
	if json.Unmarshal(msg, &fields) != nil {
		return Refs{}
	}
	var refs Refs
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
func CloseMessage(code int, reason string) []byte {
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
func Deadline(d time.Duration) time.Time {
	return time.Now().Add(d)
}

// normalizeURL turns what an operator configures into the websocket URL.
func NormalizeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("connector url: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("connector url %q: scheme must be ws or wss", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = connector.Path
	}
	return u.String(), nil
}
