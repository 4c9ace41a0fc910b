package bot

import (
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/config"
)

func TestParseCommand(t *testing.T) {
	for body, want := range map[string][]string{
		"help":                       {"help"},
		"  !Start-Chat  bob@net  ":   {"start-chat", "bob@net"},
		"start-chat +1 555 0100":     {"start-chat", "+1", "555", "0100"},
		"":                           {""},
		"!":                          {""},
		"ping extra words are fine ": {"ping", "extra", "words", "are", "fine"},
	} {
		name, args := parseCommand(body)
		if got := append([]string{name}, args...); !slices.Equal(got, want) {
			t.Errorf("parseCommand(%q) = %q, want %q", body, got, want)
		}
	}
}

func TestStartChatArgs(t *testing.T) {
	for _, tc := range []struct {
		args              []string
		identifier, login string
		ok                bool
	}{
		{[]string{"bob@net"}, "bob@net", "", true},
		{[]string{"+1", "555", "0100"}, "+1 555 0100", "", true},
		{[]string{"--login", "work", "bob@net"}, "bob@net", "work", true},
		{[]string{"bob@net", "--login", "work"}, "bob@net", "work", true},
		{[]string{"bob@net", "--login"}, "", "", false},
		{nil, "", "", false},
	} {
		identifier, login, ok := startChatArgs(tc.args)
		if identifier != tc.identifier || login != tc.login || ok != tc.ok {
			t.Errorf("startChatArgs(%q) = %q %q %v", tc.args, identifier, login, ok)
		}
	}
}

func TestHelpShowsAdminCommandsToAdminsOnly(t *testing.T) {
	cfg := config.Default()
	cfg.Homeserver.Domain = "localhost"
	cfg.Permissions = config.Permissions{"localhost": config.LevelUser, "@root:localhost": config.LevelAdmin}
	b := New(cfg, nil, nil, nil, nil, nil, zerolog.Nop())
	if help := b.helpText("@alice:localhost"); strings.Contains(help, "`logins") || !strings.Contains(help, "`start-chat") {
		t.Errorf("user help:\n%s", help)
	}
	if help := b.helpText("@root:localhost"); !strings.Contains(help, "`logins") {
		t.Errorf("admin help lacks logins:\n%s", help)
	}
}
