package xmppconnector

import (
	"fmt"
	"net"
	"sync/atomic"
)

// With tls: starttls the splitReader (xmlsplit.go) sits above TLS, so it
// sees nothing of the plaintext before it: the server's stream header, its
// stream features and its answer to STARTTLS, which mellium's decoder reads
// with no bound of its own. That phase is not authenticated either, so a
// man in the middle could fill it too. It takes a few KiB (Prosody sends
// under 1 KiB), so the raw connection is read through a preTLSConn that
// ends the login after maxPreTLS bytes, until STARTTLS has succeeded: from
// then on the TLS layer reads the connection, and the limits above TLS
// apply.
const maxPreTLS = 64 << 10

// errPreTLSTooLarge ends a login whose plaintext phase was over maxPreTLS.
var errPreTLSTooLarge = fmt.Errorf("the XMPP server sent more than %d bytes before TLS", maxPreTLS)

// preTLSConn is a connection that allows only maxPreTLS bytes to be read
// until lift is called.
type preTLSConn struct {
	net.Conn
	// left is what may still be read; only the negotiation reads it,
	// before lift.
	left int
	// lifted is set by the STARTTLS feature once the server said proceed,
	// before the TLS handshake reads anything.
	lifted atomic.Bool
}

func newPreTLSConn(c net.Conn) *preTLSConn {
	return &preTLSConn{Conn: c, left: maxPreTLS}
}

func (c *preTLSConn) Read(p []byte) (int, error) {
	if c.lifted.Load() {
		return c.Conn.Read(p)
	}
	if c.left <= 0 {
		// Asked for more: the exchange did not end within the limit.
		return 0, errPreTLSTooLarge
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= n
	return n, err
}

// lift ends the limit: what is read next is the TLS handshake.
func (c *preTLSConn) lift() { c.lifted.Store(true) }
