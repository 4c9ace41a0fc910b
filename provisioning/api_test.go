package provisioning

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/portal"
)

type fakeStarter struct {
	calls []id.UserID
	err   error
}

func (f *fakeStarter) StartChat(_ context.Context, user id.UserID, loginID, identifier string) (*portal.StartedChat, error) {
	f.calls = append(f.calls, user)
	if f.err != nil {
		return nil, f.err
	}
	return &portal.StartedChat{RoomID: "!room:localhost", LoginID: "l1", Contact: connector.Contact{ID: identifier}, Created: true}, nil
}

// testSecret is the provisioning shared secret newTestAPI configures, which
// the cases that authenticate with it present.
const testSecret = "s3cret-provisioning-0123456789abcdef"

func newTestAPI(starter *fakeStarter) *API {
	cfg := config.Default()
	cfg.Homeserver.Domain = "localhost"
	cfg.Appservice.Bot.Username = "bridgebot"
	cfg.Provisioning.SharedSecret = testSecret
	cfg.Permissions = config.Permissions{"localhost": config.LevelUser, "@mallory:localhost": config.LevelBlock}
	a := New(cfg, starter, zerolog.Nop())
	a.whoami = func(_ context.Context, token string) (id.UserID, error) {
		if user, ok := strings.CutPrefix(token, "token-of-"); ok {
			return id.UserID(user), nil
		}
		return "", errBadToken
	}
	return a
}

func call(t *testing.T, a *API, method, query, token, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, Prefix+"start-chat"+query, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func TestStartChatAuth(t *testing.T) {
	const body = `{"identifier":"bob@network"}`
	for _, tc := range []struct {
		name, query, token string
		status             int
		errcode            string
	}{
		{"no token", "", "", http.StatusUnauthorized, "M_MISSING_TOKEN"},
		{"bad token", "", "garbage", http.StatusUnauthorized, "M_UNKNOWN_TOKEN"},
		{"user token", "", "token-of-@alice:localhost", http.StatusOK, ""},
		{"blocked user", "", "token-of-@mallory:localhost", http.StatusForbidden, "M_FORBIDDEN"},
		{"unknown server", "", "token-of-@eve:elsewhere.org", http.StatusForbidden, "M_FORBIDDEN"},
		{"token for someone else", "?user_id=@bob:localhost", "token-of-@alice:localhost", http.StatusForbidden, "M_FORBIDDEN"},
		{"secret without user", "", testSecret, http.StatusBadRequest, "M_INVALID_PARAM"},
		{"secret with user", "?user_id=@alice:localhost", testSecret, http.StatusOK, ""},
		{"secret for blocked user", "?user_id=@mallory:localhost", testSecret, http.StatusForbidden, "M_FORBIDDEN"},
		{"secret for a ghost", "?user_id=@dm_bob=40network:localhost", testSecret, http.StatusForbidden, "M_FORBIDDEN"},
		{"secret for the bot", "?user_id=@bridgebot:localhost", testSecret, http.StatusForbidden, "M_FORBIDDEN"},
		{"secret for a non-canonical ghost id", "?user_id=@dm_=41:localhost", testSecret, http.StatusForbidden, "M_FORBIDDEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			starter := &fakeStarter{}
			status, out := call(t, newTestAPI(starter), http.MethodPost, tc.query, tc.token, body)
			if status != tc.status || (tc.errcode != "" && out["errcode"] != tc.errcode) {
				t.Errorf("got %d %v, want %d %s", status, out, tc.status, tc.errcode)
			}
			if called := len(starter.calls) > 0; called != (tc.status == http.StatusOK) {
				t.Errorf("StartChat called = %v with status %d", called, status)
			}
			if tc.status == http.StatusOK && (out["room_id"] != "!room:localhost" || out["created"] != true) {
				t.Errorf("answer = %v", out)
			}
		})
	}
}

func TestStartChatErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		err     error
		status  int
		errcode string
	}{
		{"not json", `{`, nil, http.StatusBadRequest, "M_BAD_JSON"},
		{"no identifier", `{"identifier":" "}`, nil, http.StatusBadRequest, "M_MISSING_PARAM"},
		{"no login", `{"identifier":"x"}`, portal.ErrNoLogin, http.StatusNotFound, "DMBRIDGE_NO_LOGIN"},
		{"login unavailable", `{"identifier":"x"}`, fmt.Errorf("%w (revoked)", portal.ErrLoginUnavailable), http.StatusForbidden, "DMBRIDGE_LOGIN_UNAVAILABLE"},
		{"logged out", `{"identifier":"x"}`, fmt.Errorf("start: %w", portal.ErrLoggedOut), http.StatusConflict, "DMBRIDGE_LOGGED_OUT"},
		{"unknown contact", `{"identifier":"x"}`, &connector.Error{Code: connector.ErrNotFound, Message: "no such user"}, http.StatusNotFound, "M_NOT_FOUND"},
		{"connector offline", `{"identifier":"x"}`, server.ErrNotConnected, http.StatusServiceUnavailable, "DMBRIDGE_CONNECTOR_UNAVAILABLE"},
		{"network refused", `{"identifier":"x"}`, &connector.Error{Code: connector.ErrForbidden, Message: "no"}, http.StatusBadGateway, connector.ErrForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := call(t, newTestAPI(&fakeStarter{err: tc.err}), http.MethodPost, "", "token-of-@alice:localhost", tc.body)
			if status != tc.status || out["errcode"] != tc.errcode {
				t.Errorf("got %d %v, want %d %s", status, out, tc.status, tc.errcode)
			}
		})
	}
	if status, _ := call(t, newTestAPI(&fakeStarter{}), http.MethodGet, "", "token-of-@alice:localhost", ""); status == http.StatusOK {
		t.Errorf("GET start-chat answered 200")
	}
}
