package provisioning

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
)

// whoamiTimeout bounds the homeserver call that verifies an access token.
const whoamiTimeout = 15 * time.Second

// errBadToken is whoamiFunc's answer for a token the homeserver rejects.
var errBadToken = errors.New("the homeserver does not accept this access token")

// whoamiFunc returns the user an access token belongs to.
type whoamiFunc func(ctx context.Context, token string) (id.UserID, error)

func homeserverWhoami(homeserverURL string) whoamiFunc {
	return func(ctx context.Context, token string) (id.UserID, error) {
		client, err := mautrix.NewClient(homeserverURL, "", token)
		if err != nil {
			return "", err
		}
		resp, err := client.Whoami(ctx)
		if errors.Is(err, mautrix.MUnknownToken) || errors.Is(err, mautrix.MMissingToken) {
			return "", errBadToken
		} else if err != nil {
			return "", err
		}
		return resp.UserID, nil
	}
}

// authenticate finds the user a request acts for, and answers the request
// itself when it may not go on. Two modes:
//   - Authorization: Bearer <the user's Matrix access token>, checked with
//     whoami against the homeserver; or
//   - Authorization: Bearer <provisioning.shared_secret> and ?user_id=, for
//     a trusted integration acting for any user.
//
// Either way the user must be allowed to use the bridge.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (id.UserID, bool) {
	token, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !found || token == "" {
		writeError(w, http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing Authorization: Bearer header")
		return "", false
	}
	userParam := id.UserID(r.URL.Query().Get("user_id"))
	var user id.UserID
	if secret := a.cfg.Provisioning.SharedSecret; secret != "" && sameSecret(token, secret) {
		if _, _, err := userParam.ParseAndValidateRelaxed(); err != nil {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "The shared secret needs a valid user_id query parameter")
			return "", false
		}
		user = userParam
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), whoamiTimeout)
		defer cancel()
		var err error
		user, err = a.whoami(ctx, token)
		if errors.Is(err, errBadToken) {
			writeError(w, http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "Unknown access token")
			return "", false
		} else if errors.Is(err, errBusy) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", "Too many access token checks at once; retry shortly")
			return "", false
		} else if err != nil {
			a.log.Warn().Err(err).Msg("Could not verify an access token")
			writeError(w, http.StatusBadGateway, "M_UNKNOWN", "Could not verify the access token with the homeserver")
			return "", false
		}
		if userParam != "" && userParam != user {
			writeError(w, http.StatusForbidden, "M_FORBIDDEN", "user_id does not match the access token")
			return "", false
		}
	}
	if reason := a.refuse(user); reason != "" {
		a.log.Warn().Stringer("user_id", user).Str("reason", reason).Msg("Refused provisioning request")
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", reason)
		return "", false
	}
	return user, true
}

// refuse says why a user may not use the API, or "".
func (a *API) refuse(user id.UserID) string {
	if a.cfg.InAppserviceNamespace(user) {
		return "The bridge's own users cannot be provisioned"
	}
	if a.cfg.PermissionLevel(user) < config.LevelUser {
		return "You are not allowed to use this bridge"
	}
	return ""
}

// sameSecret compares digests in constant time, so the time taken does not
// even reveal the secret's length.
func sameSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
