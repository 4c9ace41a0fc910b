package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
)

// RawConn is a bare connection to a bridge that follows none of the
// protocol's rules by itself: it writes whatever it is given, malformed or
// oversize. It exists for conformance tests of the bridge side.
type RawConn struct {
	WS *websocket.Conn
}

// DialRaw connects to a bridge's websocket endpoint. An empty token sends no
// Authorization header; subprotocols is sent as is (none if empty). On an
// HTTP refusal the response is returned along with the error.
func DialRaw(ctx context.Context, rawURL, token string, subprotocols []string) (*RawConn, *http.Response, error) {
	u, err := normalizeURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	header := http.Header{}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	dialer := websocket.Dialer{HandshakeTimeout: writeWait, Subprotocols: subprotocols}
	ws, resp, err := dialer.DialContext(ctx, u, header)
	if err != nil {
		return nil, resp, fmt.Errorf("dial %s: %w", u, err)
	}
	return &RawConn{WS: ws}, resp, nil
}

// WriteText sends b as one text frame, unchecked.
func (r *RawConn) WriteText(b []byte) error {
	_ = r.WS.SetWriteDeadline(deadline(writeWait))
	return r.WS.WriteMessage(websocket.TextMessage, b)
}

// WriteFrame sends f with data (if not nil) marshalled into f.Data.
func (r *RawConn) WriteFrame(f Frame, data any) error {
	b, err := encodeFrame(f, data)
	if err != nil {
		return err
	}
	return r.WriteText(b)
}

// ReadFrame reads the next frame, waiting at most timeout. A close from the
// bridge comes back as an error that CloseCode understands.
func (r *RawConn) ReadFrame(timeout time.Duration) (*Frame, error) {
	_ = r.WS.SetReadDeadline(deadline(timeout))
	_, msg, err := r.WS.ReadMessage()
	if err != nil {
		return nil, err
	}
	var f Frame
	if err := json.Unmarshal(msg, &f); err != nil {
		return nil, fmt.Errorf("decode frame %q: %w", msg, err)
	}
	return &f, nil
}

// Close drops the connection without a closing handshake, like a crash.
func (r *RawConn) Close() error {
	return r.WS.Close()
}
