package config

import (
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"
)

// MinSecretLength is the shortest connector token or provisioning secret the
// bridge accepts: anything shorter may be guessed or was typed by hand.
const MinSecretLength = 32

// ConnectorAccess is one connector with a token of its own. A connector
// that authenticates with Token may only use ID, and may only serve the
// users listed in AllowedUsers or on the servers in AllowedServers (and the
// permissions must still allow them).
type ConnectorAccess struct {
	ID             string   `yaml:"id"`
	Token          string   `yaml:"token"`
	AllowedUsers   []string `yaml:"allowed_users"`
	AllowedServers []string `yaml:"allowed_servers"`
}

// ConnectorTokens maps each connector id with a token of its own to that
// token, for the connector listener.
func (c *Config) ConnectorTokens() map[string]string {
	tokens := make(map[string]string, len(c.Connector.Connectors))
	for _, a := range c.Connector.Connectors {
		tokens[a.ID] = a.Token
	}
	return tokens
}

// ConnectorMayServe says whether connectorID may hold a login of userID. A
// connector id without its own entry is reachable only with the shared
// token, which serves everyone the permissions allow.
func (c *Config) ConnectorMayServe(connectorID string, userID id.UserID) bool {
	i := slices.IndexFunc(c.Connector.Connectors, func(a ConnectorAccess) bool { return a.ID == connectorID })
	if i < 0 {
		return true
	}
	a := c.Connector.Connectors[i]
	if slices.Contains(a.AllowedUsers, string(userID)) {
		return true
	}
	_, server, err := userID.Parse()
	return err == nil && slices.Contains(a.AllowedServers, server)
}

// secret checks a token's length; an empty one is left to the caller.
func (v *validator) secret(key, value string) {
	if value != "" && len(value) < MinSecretLength {
		v.fail(key, "too short (%d characters); use at least %d random characters, e.g. from `openssl rand -hex 32`",
			len(value), MinSecretLength)
	}
}

func (v *validator) connectorAccess() {
	cc := v.c.Connector
	seenIDs := map[string]bool{}
	seenTokens := map[string]bool{cc.Token: cc.Token != ""}
	for i, a := range cc.Connectors {
		key := fmt.Sprintf("connector.connectors[%d]", i)
		if !v.required(key+".id", a.ID) {
			return
		}
		if seenIDs[a.ID] {
			v.fail(key+".id", "connector id %q is listed twice", a.ID)
		}
		seenIDs[a.ID] = true
		if a.Token == "" {
			v.fail(key+".token", "required but empty: a listed connector needs a token of its own")
		}
		v.secret(key+".token", a.Token)
		if seenTokens[a.Token] {
			v.fail(key+".token", "the same token as connector.token or another connector; give each connector its own")
		}
		seenTokens[a.Token] = true
		if len(a.AllowedUsers) == 0 && len(a.AllowedServers) == 0 {
			v.fail(key, "needs allowed_users or allowed_servers: the Matrix users this connector may serve")
		}
		for j, u := range a.AllowedUsers {
			if _, _, err := id.UserID(u).ParseAndValidateRelaxed(); err != nil || !strings.HasPrefix(u, "@") {
				v.fail(fmt.Sprintf("%s.allowed_users[%d]", key, j), "not a valid user id (want @user:server): %q", u)
			}
		}
		for j, s := range a.AllowedServers {
			if !id.ValidateServerName(s) {
				v.fail(fmt.Sprintf("%s.allowed_servers[%d]", key, j), "not a valid Matrix server name: %q", s)
			}
		}
	}
}
