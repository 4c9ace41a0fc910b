package appservice

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"maunium.net/go/mautrix"
)

// checkHSToken answers as the spec asks of an appservice: 401 M_MISSING_TOKEN when the
// homeserver sent no token, 403 M_FORBIDDEN when it sent a wrong one. The
// comparison takes the same time whatever the token.
func (l *Link) checkHSToken(w http.ResponseWriter, r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		token = r.URL.Query().Get("access_token")
	}
	if token == "" {
		l.log.Warn().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Msg("Refused a homeserver request without hs_token")
		mautrix.MMissingToken.WithMessage("Missing hs_token").Write(w)
		return false
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(l.AS.Registration.ServerToken)) != 1 {
		l.log.Warn().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Msg("Refused a homeserver request with a wrong hs_token")
		mautrix.MForbidden.WithMessage("Wrong hs_token").Write(w)
		return false
	}
	return true
}
