package appservice

import (
	"net/http"
	"time"
)

// Limits of the bridge's HTTP listeners. A client gets ReadHeaderTimeout to
// send its request headers and a keep-alive connection is closed after
// IdleTimeout without a request, so connections that say nothing (or say
// it a byte at a time) cannot pile up until the process runs out of file
// descriptors. Request bodies have no overall deadline: a transaction may be
// large and a provisioning call waits for the connector, and the websocket
// of a connector lives for hours.
const (
	ReadHeaderTimeout = 10 * time.Second
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 64 << 10
)

// NewHTTPServer is an http.Server for h with the listener limits above.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}
