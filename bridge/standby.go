package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/ha"
	"github.com/dmbridge/dmbridge/health"
	"github.com/dmbridge/dmbridge/metrics"
)

// WaitActive runs the standby side of high availability: it joins the
// election and, until this instance wins it, holds the appservice and
// connector listen addresses with an answer of 503 to everything (health
// says "standby", ready is 503), so that a load balancer sends the
// homeserver and the connectors to the active. Nothing of the bridge runs
// meanwhile. Once elected it frees the addresses and returns the elector,
// for NewActive; the caller stops all work when Lost is closed.
func WaitActive(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*ha.Elector, error) {
	lease, err := ha.New(ctx, cfg.Database.URI, ElectorOptions(cfg), log)
	if err != nil {
		return nil, err
	}
	log = log.With().Str("instance", lease.Instance()).Logger()
	if ElectorOptions(cfg).EpochFenceOnly {
		log.Warn().Str("variable", EpochFenceOnlyEnv).
			Msg("TEST MODE: fencing by this process's clock is off; never run like this in production")
	}
	var servers []*http.Server
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range servers {
			_ = s.Shutdown(sctx)
		}
	}
	h := standbyHandler(lease)
	asAddr := net.JoinHostPort(cfg.Appservice.Hostname, strconv.Itoa(cfg.Appservice.Port))
	for _, addr := range []string{asAddr, cfg.Connector.Listen} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			stop()
			return nil, fmt.Errorf("standby: listen on %s: %w", addr, err)
		}
		srv := appservice.NewHTTPServer(h)
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Str("address", addr).Msg("Standby listener failed")
			}
		}()
	}
	if listen := cfg.Metrics.Listen; listen != "" {
		mx := metrics.New()
		registerRole(mx, lease)
		msrv, err := mx.Listen(listen, log.With().Str("component", "metrics").Logger())
		if err != nil {
			stop()
			return nil, err
		}
		defer func() { _ = msrv.Stop(context.Background()) }()
	}
	log.Info().Str("appservice_listen", asAddr).Str("connector_listen", cfg.Connector.Listen).
		Msg("Standby: answering 503 until this instance is elected")
	err = lease.WaitActive(ctx)
	stop()
	if err != nil {
		return nil, err
	}
	return lease, nil
}

// standbyHandler answers a standby's listeners.
func standbyHandler(lease *ha.Elector) http.Handler {
	mux := http.NewServeMux()
	body := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	role := func() string { r, _ := lease.Role(); return string(r) }
	mux.HandleFunc("GET "+health.HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		body(w, http.StatusOK, map[string]string{"status": "ok", "role": role()})
	})
	mux.HandleFunc("GET "+health.ReadyPath, func(w http.ResponseWriter, _ *http.Request) {
		body(w, http.StatusServiceUnavailable, health.Readiness{Checks: map[string]string{"lease": role()}})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		// The homeserver retries a refused transaction; a connector
		// redials (the next bridge URL, with the SDK).
		w.Header().Set("Retry-After", "1")
		body(w, http.StatusServiceUnavailable, map[string]string{
			"errcode": "M_UNAVAILABLE", "error": "this bridge instance is a standby"})
	})
	return mux
}
