package config

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestPermissionLevel(t *testing.T) {
	src := edit(t, minimalYAML, "  localhost: user", `  "*": block
  localhost: user
  "@boss:localhost": admin
  "@troll:localhost": block
  other.example: admin`)
	cfg := mustParse(t, src)
	tests := []struct {
		user id.UserID
		want Level
	}{
		{"@boss:localhost", LevelAdmin},       // exact user beats server
		{"@troll:localhost", LevelBlock},      // exact user beats server
		{"@alice:localhost", LevelUser},       // server
		{"@x:other.example", LevelAdmin},      // server
		{"@mallory:evil.example", LevelBlock}, // "*"
		{"not a user id", LevelBlock},
	}
	for _, tt := range tests {
		if got := cfg.PermissionLevel(tt.user); got != tt.want {
			t.Errorf("PermissionLevel(%s) = %s, want %s", tt.user, got, tt.want)
		}
	}
	empty := &Config{}
	if got := empty.PermissionLevel("@a:b"); got != LevelBlock {
		t.Errorf("no permissions: %s, want block", got)
	}
	star := &Config{Permissions: Permissions{"*": LevelUser}}
	if got := star.PermissionLevel("@a:b"); got != LevelUser {
		t.Errorf(`"*": %s, want user`, got)
	}
}

func TestParseLevel(t *testing.T) {
	for s, want := range map[string]Level{"block": LevelBlock, "user": LevelUser, "Admin": LevelAdmin} {
		if got, err := ParseLevel(s); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseLevel("root"); err == nil {
		t.Error("ParseLevel accepted root")
	}
}
