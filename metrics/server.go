package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Server is the metrics listener: /metrics for Prometheus and /debug/pprof/
// for profiles. It is separate from the appservice listener so that it can
// stay on loopback or an internal network: profiles and metrics are for
// operators, not for the homeserver.
type Server struct {
	srv  *http.Server
	addr net.Addr
	log  zerolog.Logger
}

// Handler serves /metrics from the instance's registry and the pprof
// endpoints, on a mux of its own.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		// A collector error (e.g. the database) still serves the rest.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mountPprof(mux)
	return mux
}

// Listen binds addr and serves the metrics there until Stop.
func (m *Metrics) Listen(addr string, log zerolog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	s := &Server{
		// No WriteTimeout: a CPU profile streams for as long as it was asked.
		srv:  &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second},
		addr: ln.Addr(),
		log:  log,
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("Metrics listener failed")
		}
	}()
	log.Info().Str("address", ln.Addr().String()).Msg("Serving metrics and pprof")
	return s, nil
}

// Addr is where the listener is bound (useful with port 0).
func (s *Server) Addr() net.Addr { return s.addr }

// stopGrace bounds how long Stop lets requests in progress finish. A
// scrape takes milliseconds; a CPU profile or a trace streams for as long
// as it was asked (up to minutes), and must not hold back a shutdown, nor a
// standby's takeover (which stops this listener before it starts): it is
// cut off.
const stopGrace = time.Second

// Stop closes the listener, letting scrapes in progress finish within ctx
// and stopGrace, and then closes the connections still open.
func (s *Server) Stop(ctx context.Context) error {
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, stopGrace)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.log.Info().Msg("Cutting off metrics or profile requests still running")
		return s.srv.Close()
	}
	return nil
}
