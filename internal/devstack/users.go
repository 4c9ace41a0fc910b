package devstack

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
)

// RegisterUser creates an ordinary (non-appservice) account through the
// shared-secret admin API, the only way in: open registration is off.
func (d *Dendrite) RegisterUser(ctx context.Context, localpart, password string) (*mautrix.RespRegister, error) {
	anon, err := mautrix.NewClient(d.URL, "", "")
	if err != nil {
		return nil, err
	}
	regURL := anon.BuildURL(mautrix.SynapseAdminURLPath{"v1", "register"})
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if _, err := anon.MakeRequest(ctx, http.MethodGet, regURL, nil, &nonce); err != nil {
		return nil, fmt.Errorf("getting a registration nonce: %w", err)
	}
	// The MAC format is Synapse's: HMAC-SHA1 over NUL-separated fields.
	mac := hmac.New(sha1.New, []byte(d.SharedSecret))
	mac.Write([]byte(strings.Join([]string{nonce.Nonce, localpart, password, "notadmin"}, "\x00")))
	req := map[string]any{
		"nonce":    nonce.Nonce,
		"username": localpart,
		"password": password,
		"admin":    false,
		"mac":      hex.EncodeToString(mac.Sum(nil)),
	}
	var resp mautrix.RespRegister
	if _, err := anon.MakeRequest(ctx, http.MethodPost, regURL, req, &resp); err != nil {
		return nil, fmt.Errorf("registering %s: %w", localpart, err)
	}
	return &resp, nil
}

// DoublePuppetRegistration returns an extra appservice registration for
// double puppeting: its as_token may act as any user on domain by adding
// ?user_id=... to requests. It has no URL, which Dendrite takes to mean
// "never push transactions here", and its namespace is non-exclusive so
// it takes nothing away from real users or from the bridge's own
// registration.
func DoublePuppetRegistration(domain string) *appservice.Registration {
	reg := appservice.CreateRegistration()
	suffix := RandomHex(6)
	reg.ID = "doublepuppet-" + suffix
	reg.SenderLocalpart = "doublepuppet-" + suffix
	reg.URL = ""
	rateLimited := false
	reg.RateLimited = &rateLimited
	reg.Namespaces.UserIDs.Register(regexp.MustCompile("@.*:"+regexp.QuoteMeta(domain)), false)
	return reg
}

// RandomHex returns n random bytes as hex, for secrets and passwords.
func RandomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(buf)
}
