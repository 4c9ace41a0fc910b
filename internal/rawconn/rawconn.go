// Package rawconn dials a bridge's connector endpoint and speaks to it
// without following any of the protocol's rules, for tests and the
// conformance tool.
package rawconn

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// RawConn is a bare connection to a bridge that follows none of the
// protocol's rules by itself: it writes whatever it is given, malformed or
// oversize. It exists for conformance tests of the bridge side.
type Conn struct {
	WS *websocket.Conn
}

// DialRaw connects to a bridge's websocket endpoint. An empty token sends no
// Authorization header; subprotocols is sent as is (none if empty). On an
// HTTP refusal the response is returned along with the error.
func Dial(ctx context.Context, rawURL, token string, subprotocols []string) (*Conn, *http.Response, error) {
	u, err := connws.NormalizeURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	header := http.Header{}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	dialer := websocket.Dialer{HandshakeTimeout: connws.WriteWait, Subprotocols: subprotocols}
	ws, resp, err := dialer.DialContext(ctx, u, header)
	if err != nil {
		return nil, resp, fmt.Errorf("dial %s: %w", u, err)
	}
	return &Conn{WS: ws}, resp, nil
}

// WriteText sends b as one text frame, unchecked.
func (r *Conn) WriteText(b []byte) error {
	_ = r.WS.SetWriteDeadline(connws.Deadline(connws.WriteWait))
	return r.WS.WriteMessage(websocket.TextMessage, b)
}

// WriteFrame sends f with data (if not nil) marshalled into f.Data.
func (r *Conn) WriteFrame(f connector.Frame, data any) error {
	b, err := connws.EncodeFrame(f, data)
	if err != nil {
		return err
	}
	return r.WriteText(b)
}

// ReadFrame reads the next frame, waiting at most timeout. A close from the
// bridge comes back as an error that CloseCode understands.
func (r *Conn) ReadFrame(timeout time.Duration) (*connector.Frame, error) {
	_ = r.WS.SetReadDeadline(connws.Deadline(timeout))
	_, msg, err := r.WS.ReadMessage()
	if err != nil {
		return nil, err
	}
	var f connector.Frame
	if err := json.Unmarshal(msg, &f); err != nil {
		return nil, fmt.Errorf("decode frame %q: %w", msg, err)
	}
	return &f, nil
}

// Close drops the connection without a closing handshake, like a crash.
func (r *Conn) Close() error {
	return r.WS.Close()
}
