// Package xmppclient holds the client-side XMPP pieces that both the
// connector (xmppconnector) and the test XMPP client (internal/testxmpp)
// need, and that carry nothing the connector writes: ending a session's
// stream, and the HTTP File Upload slot the server hands out. What the
// connector sends stays out of here on purpose, so that the test client
// keeps decoding it on its own and cannot share the connector's mistakes.
package xmppclient
