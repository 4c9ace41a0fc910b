// Package provisioning is the bridge's HTTP API for integrations (a web UI,
// an integration manager): it does what the bot's commands do, for a user
// authenticated by their Matrix access token or by a shared secret.
//
// It is mounted on the appservice listener under Prefix.
package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/exhttp"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/portal"
)

// Prefix is the path every provisioning route lives under.
const Prefix = "/_dmbridge/provision/v1/"

// maxBodyBytes bounds a request body; requests carry a few short strings.
const maxBodyBytes = 64 << 10

// startChatTimeout bounds one start-chat. The work continues even if the
// caller hangs up, so that a portal is not left half made.
const startChatTimeout = 2 * time.Minute

// ChatStarter is what the API needs of the portal manager.
type ChatStarter interface {
	StartChat(ctx context.Context, user id.UserID, loginID, identifier string) (*portal.StartedChat, error)
}

// API serves the provisioning routes.
type API struct {
	cfg     *config.Config
	portals ChatStarter
	log     zerolog.Logger
	whoami  whoamiFunc
	mux     *http.ServeMux
}

// New creates the API. Users are verified with whoami against the homeserver
// in cfg.
func New(cfg *config.Config, portals ChatStarter, log zerolog.Logger) *API {
	a := &API{
		cfg: cfg, portals: portals,
		log:    log.With().Str("component", "provisioning").Logger(),
		whoami: newWhoamiCache(homeserverWhoami(cfg.Homeserver.Address)).lookup,
		mux:    http.NewServeMux(),
	}
	a.mux.HandleFunc("POST "+Prefix+"start-chat", a.startChat)
	a.mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unknown provisioning endpoint")
	})
	return a
}

// ServeHTTP serves the API. CORS is open: every request carries its own
// bearer credential, so a browser-based integration may call from anywhere
// without that widening what a request can do.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	a.mux.ServeHTTP(w, r)
}

type startChatRequest struct {
	Identifier string `json:"identifier"`
	Login      string `json:"login,omitempty"`
}

type startChatResponse struct {
	RoomID   id.RoomID         `json:"room_id"`
	MatrixTo string            `json:"matrix_to"`
	Login    string            `json:"login"`
	Contact  connector.Contact `json:"contact"`
	// Created says whether this call made the room (false: it existed).
	Created bool `json:"created"`
}

func (a *API) startChat(w http.ResponseWriter, r *http.Request) {
	user, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	log := a.log.With().Stringer("user_id", user).Str("endpoint", "start-chat").Logger()
	var req startChatRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil || len(body) > maxBodyBytes {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Unreadable or oversized request body")
		return
	} else if err = json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "Request body is not valid JSON: "+err.Error())
		return
	} else if strings.TrimSpace(req.Identifier) == "" {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "identifier is required")
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), startChatTimeout)
	defer cancel()
	started, err := a.portals.StartChat(log.WithContext(ctx), user, req.Login, req.Identifier)
	if err != nil {
		status, code := statusOf(err)
		log.Warn().Err(err).Int("status", status).Msg("Start-chat refused")
		writeError(w, status, code, portal.UserMessage(err))
		return
	}
	exhttp.WriteJSONResponse(w, http.StatusOK, &startChatResponse{
		RoomID: started.RoomID, MatrixTo: started.RoomID.URI().MatrixToURL(),
		Login: started.LoginID, Contact: started.Contact, Created: started.Created,
	})
}

// statusOf maps a start-chat failure to an HTTP status and error code.
func statusOf(err error) (int, string) {
	var cerr *connector.Error
	switch {
	case errors.Is(err, portal.ErrNotAllowed):
		return http.StatusForbidden, "M_FORBIDDEN"
	case errors.Is(err, portal.ErrNoLogin):
		return http.StatusNotFound, "DMBRIDGE_NO_LOGIN"
	case errors.Is(err, portal.ErrUnknownLogin):
		return http.StatusNotFound, "DMBRIDGE_UNKNOWN_LOGIN"
	case errors.Is(err, portal.ErrLoginUnavailable):
		// The user has logins, but none the bridge may use for them now
		// (their connector may no longer serve them): not theirs to fix.
		return http.StatusForbidden, "DMBRIDGE_LOGIN_UNAVAILABLE"
	case errors.Is(err, portal.ErrLoggedOut):
		// The network logged the login out: the user's to fix, by
		// logging in again, and not a fault of the request.
		return http.StatusConflict, "DMBRIDGE_LOGGED_OUT"
	case errors.Is(err, portal.ErrNotDM):
		return http.StatusUnprocessableEntity, "DMBRIDGE_NOT_DM"
	case errors.As(err, &cerr) && cerr.Code == connector.ErrNotFound:
		return http.StatusNotFound, "M_NOT_FOUND"
	case errors.As(err, &cerr) && cerr.Retryable:
		return http.StatusServiceUnavailable, "DMBRIDGE_CONNECTOR_UNAVAILABLE"
	case errors.As(err, &cerr):
		return http.StatusBadGateway, cerr.Code
	}
	return http.StatusInternalServerError, "M_UNKNOWN"
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	exhttp.WriteJSONResponse(w, status, map[string]string{"errcode": code, "error": message})
}
