package config

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"
)

// Level is how much a Matrix user may do with the bridge.
type Level int

const (
	// LevelBlock users are ignored entirely.
	LevelBlock Level = iota
	// LevelUser users may log in and bridge their own conversations.
	LevelUser
	// LevelAdmin users may also manage the bridge.
	LevelAdmin
)

var levelNames = [...]string{LevelBlock: "block", LevelUser: "user", LevelAdmin: "admin"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// ParseLevel turns "block", "user" or "admin" into a Level.
func ParseLevel(s string) (Level, error) {
	for l, name := range levelNames {
		if strings.EqualFold(s, name) {
			return Level(l), nil
		}
	}
	return LevelBlock, fmt.Errorf("unknown permission level %q (want block, user or admin)", s)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *Level) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return fmt.Errorf("wrong type: want block, user or admin, got %s", describeNode(node))
	}
	parsed, err := ParseLevel(node.Value)
	if err != nil {
		return err
	}
	*l = parsed
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (l Level) MarshalYAML() (any, error) { return l.String(), nil }

// Permissions maps "*", a server name or a full Matrix user id to a Level.
type Permissions map[string]Level

// PermissionLevel says what userID may do. The most specific entry wins: the
// exact user id, then the user's server name, then "*"; with no matching
// entry the user is blocked.
func (c *Config) PermissionLevel(userID id.UserID) Level {
	if level, ok := c.Permissions[string(userID)]; ok {
		return level
	}
	if _, server, err := userID.Parse(); err == nil {
		if level, ok := c.Permissions[server]; ok {
			return level
		}
	}
	if level, ok := c.Permissions["*"]; ok {
		return level
	}
	return LevelBlock
}

// checkPermissionKey says why key cannot match any user, or "" if it can.
func checkPermissionKey(key string) string {
	switch {
	case key == "*":
		return ""
	case strings.HasPrefix(key, "@"):
		if _, _, err := id.UserID(key).ParseAndValidateRelaxed(); err != nil {
			return fmt.Sprintf("not a valid user id (want @user:server): %q", key)
		}
		return ""
	case id.ValidateServerName(key):
		return ""
	default:
		return fmt.Sprintf(`not "*", a server name or a user id: %q`, key)
	}
}
