package xmppclient

import (
	"time"

	"mellium.im/xmpp"
)

// closeGrace is how long the server gets to close its side of the stream
// before the TCP connection is dropped under it.
const closeGrace = 5 * time.Second

// Close ends sess's stream and waits until served is closed, which the
// caller does once sess.Serve has returned. A server that does not answer
// the stream end within closeGrace has its connection dropped, so that
// Close never hangs on a dead peer.
func Close(sess *xmpp.Session, served <-chan struct{}) {
	_ = sess.Close()
	select {
	case <-served:
	case <-time.After(closeGrace):
		_ = sess.Conn().Close()
		<-served
	}
}
