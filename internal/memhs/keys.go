package memhs

import (
	"encoding/json"
	"net/http"
	"strings"
)

// keyStore is what the homeserver keeps of the users' end-to-end keys: each
// device's signed keys and a count of its one-time keys (the keys
// themselves are never claimed here), and each user's cross-signing keys.
// The bridge gives every ghost a device in the background when encryption
// is allowed (on by default); without these endpoints every such device
// failed at its first upload, so a benchmark measured neither the
// devices' cost nor a real homeserver's answers.
type keyStore struct {
	devices      map[string]map[string]json.RawMessage // user -> device -> device_keys
	otks         map[string]int                        // user + "|" + device -> one-time keys held
	crossSigning map[string]map[string]json.RawMessage // user -> "master_key"... -> key
	tokenDevice  map[string]string                     // access token of a login -> its device
}

func newKeyStore() keyStore {
	return keyStore{
		devices: map[string]map[string]json.RawMessage{}, otks: map[string]int{},
		crossSigning: map[string]map[string]json.RawMessage{}, tokenDevice: map[string]string{},
	}
}

func (s *Server) addKeyRoutes(add func(pattern, endpoint string, h handler)) {
	add("POST "+cs+"/keys/upload", "/keys/upload", s.uploadKeys)
	add("POST "+cs+"/keys/query", "/keys/query", s.queryKeys)
	add("POST "+cs+"/keys/device_signing/upload", "/keys/device_signing/upload", s.uploadCrossSigning)
	add("POST "+cs+"/keys/signatures/upload", "/keys/signatures/upload", func(*http.Request, []byte, string) (int, any) {
		return 200, map[string]any{"failures": map[string]any{}}
	})
}

func (s *Server) uploadKeys(r *http.Request, body []byte, me string) (int, any) {
	var req struct {
		DeviceKeys  json.RawMessage            `json:"device_keys"`
		OneTimeKeys map[string]json.RawMessage `json:"one_time_keys"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return 400, mxErr("M_BAD_JSON", err.Error())
	}
	if me == "" {
		return 401, mxErr("M_UNKNOWN_TOKEN", "unknown token")
	}
	device := s.keys.tokenDevice[bearer(r)]
	if len(req.DeviceKeys) > 0 {
		var keys struct {
			UserID   string `json:"user_id"`
			DeviceID string `json:"device_id"`
		}
		if err := json.Unmarshal(req.DeviceKeys, &keys); err != nil || keys.UserID != me || keys.DeviceID == "" {
			return 400, mxErr("M_INVALID_PARAM", "device_keys must name the caller and a device")
		}
		device = keys.DeviceID
		if s.keys.devices[me] == nil {
			s.keys.devices[me] = map[string]json.RawMessage{}
		}
		s.keys.devices[me][device] = append(json.RawMessage(nil), req.DeviceKeys...)
	}
	if device == "" {
		return 400, mxErr("M_INVALID_PARAM", "no device to upload keys for")
	}
	n := s.keys.otks[me+"|"+device] + len(req.OneTimeKeys)
	s.keys.otks[me+"|"+device] = n
	return 200, map[string]any{"one_time_key_counts": map[string]int{"signed_curve25519": n}}
}

func (s *Server) queryKeys(_ *http.Request, body []byte, me string) (int, any) {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return 400, mxErr("M_BAD_JSON", err.Error())
	}
	out := map[string]map[string]json.RawMessage{"device_keys": {}, "master_keys": {}, "self_signing_keys": {}, "user_signing_keys": {}}
	devices := map[string]map[string]json.RawMessage{}
	for user, want := range req.DeviceKeys {
		found := map[string]json.RawMessage{}
		for device, keys := range s.keys.devices[user] {
			if len(want) == 0 || contains(want, device) {
				found[device] = keys
			}
		}
		devices[user] = found
		cross := s.keys.crossSigning[user]
		for field, kind := range map[string]string{"master_keys": "master_key", "self_signing_keys": "self_signing_key"} {
			if key, ok := cross[kind]; ok {
				out[field][user] = key
			}
		}
		// A user's user-signing key is shown to that user only.
		if key, ok := cross["user_signing_key"]; ok && user == me {
			out["user_signing_keys"][user] = key
		}
	}
	return 200, map[string]any{
		"failures": map[string]any{}, "device_keys": devices, "master_keys": out["master_keys"],
		"self_signing_keys": out["self_signing_keys"], "user_signing_keys": out["user_signing_keys"],
	}
}

func (s *Server) uploadCrossSigning(_ *http.Request, body []byte, me string) (int, any) {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return 400, mxErr("M_BAD_JSON", err.Error())
	}
	if me == "" {
		return 401, mxErr("M_UNKNOWN_TOKEN", "unknown token")
	}
	if s.keys.crossSigning[me] == nil {
		s.keys.crossSigning[me] = map[string]json.RawMessage{}
	}
	for _, kind := range []string{"master_key", "self_signing_key", "user_signing_key"} {
		if key, ok := req[kind]; ok {
			s.keys.crossSigning[me][kind] = append(json.RawMessage(nil), key...)
		}
	}
	return 200, struct{}{}
}

// bearer is the request's access token.
func bearer(r *http.Request) string {
	if tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "); tok != "" {
		return tok
	}
	return r.URL.Query().Get("access_token")
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
