package config

import (
	"regexp"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestGhostUserIDRoundTrip(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	ids := []string{
		"bob@example.org",
		"+1 555 0100",
		"Alice_Smith",
		"zoë@ünïcode.example",
		"日本語",
		"a=b/c",
		"-",
		"UPPER",
	}
	for _, contact := range ids {
		userID := cfg.GhostUserID(contact)
		localpart, server, err := userID.ParseAndValidateStrict()
		if err != nil {
			t.Errorf("%q -> %q is not a valid user id: %v", contact, userID, err)
			continue
		}
		if server != "localhost" || localpart != cfg.GhostLocalpart(contact) {
			t.Errorf("%q -> %q: wrong parts", contact, userID)
		}
		got, ok := cfg.ParseGhostUserID(userID)
		if !ok || got != contact {
			t.Errorf("ParseGhostUserID(%q) = %q, %v; want %q", userID, got, ok, contact)
		}
	}
	if got := cfg.GhostLocalpart("bob@example.org"); got != "dm_bob=40example.org" {
		t.Errorf("GhostLocalpart = %q", got)
	}
}

func TestParseGhostUserIDRejectsNonGhosts(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	for _, userID := range []id.UserID{
		"@dm_bob:other.example", // another server
		"@alice:localhost",      // no prefix
		"@dm_:localhost",        // empty contact id
		"@dm_=41:localhost",     // non-canonical spelling of "A"
		"@dm_=4:localhost",      // broken escape
		"@dm_bob",               // not a user id
		cfg.BotUserID(),
	} {
		if contact, ok := cfg.ParseGhostUserID(userID); ok {
			t.Errorf("ParseGhostUserID(%q) = %q, true; want false", userID, contact)
		}
	}
}

func TestGhostTemplateWithSuffix(t *testing.T) {
	src := minimalYAML + "ghosts:\n  username_template: \"xmpp.{{.}}.bridge\"\n"
	cfg := mustParse(t, src)
	if got := cfg.GhostLocalpart("Bob"); got != "xmpp._bob.bridge" {
		t.Errorf("GhostLocalpart = %q", got)
	}
	if got, ok := cfg.ParseGhostUserID("@xmpp._bob.bridge:localhost"); !ok || got != "Bob" {
		t.Errorf("ParseGhostUserID = %q, %v", got, ok)
	}
	if _, ok := cfg.ParseGhostUserID("@xmpp._bob:localhost"); ok {
		t.Error("accepted a user id without the suffix")
	}
}

func TestGhostMethodsFollowEdits(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	cfg.Ghosts.UsernameTemplate = "other_{{.}}"
	if got := cfg.GhostLocalpart("x"); got != "other_x" {
		t.Errorf("after edit GhostLocalpart = %q; the cached template was used", got)
	}
	unvalidated := &Config{}
	if got := unvalidated.GhostLocalpart("x"); got != "dm_x" {
		t.Errorf("unvalidated config with no template: %q, want the default template", got)
	}
}

func TestGhostNamespaceRegexMatchesGhostsOnly(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	reg := cfg.GenerateRegistration()
	ghostNS := regexp.MustCompile(reg.Namespaces.UserIDs[0].Regex)
	for _, contact := range []string{"bob@example.org", "+1 555", "日本語"} {
		if userID := cfg.GhostUserID(contact); !ghostNS.MatchString(string(userID)) {
			t.Errorf("namespace %s does not match ghost %s", ghostNS, userID)
		}
	}
	for _, userID := range []string{"@alice:localhost", "@dm_bob:localhost.evil", "@dm_:localhost", string(cfg.BotUserID())} {
		if ghostNS.MatchString(userID) {
			t.Errorf("namespace %s matches non-ghost %s", ghostNS, userID)
		}
	}
}

func TestGhostDisplayname(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	if got := cfg.GhostDisplayname("Bob", "bob@example.org"); got != "Bob" {
		t.Errorf("default template: %q", got)
	}
	if got := cfg.GhostDisplayname("", "bob@example.org"); got != "bob@example.org" {
		t.Errorf("empty name should fall back to the id: %q", got)
	}
	cfg = mustParse(t, minimalYAML+"ghosts:\n  displayname_template: \"{{.Name}} ({{.ID}})\"\n")
	if got := cfg.GhostDisplayname("Bob", "bob@example.org"); got != "Bob (bob@example.org)" {
		t.Errorf("custom template: %q", got)
	}
}

func TestBotUserID(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	if got := cfg.BotUserID(); got != "@dmbridgebot:localhost" {
		t.Errorf("BotUserID = %q", got)
	}
}

func TestInAppserviceNamespace(t *testing.T) {
	c := Default()
	c.Homeserver.Domain = "localhost"
	c.Appservice.Bot.Username = "dmbridgebot"
	for user, want := range map[string]bool{
		"@dmbridgebot:localhost":          true,
		"@dm_bob=40network:localhost":     true,
		"@dm_=41:localhost":               true, // not a canonical ghost id, still the bridge's
		"@dm_:localhost":                  false,
		"@alice:localhost":                false,
		"@dm_bob=40network:elsewhere.org": false,
	} {
		if got := c.InAppserviceNamespace(id.UserID(user)); got != want {
			t.Errorf("InAppserviceNamespace(%s) = %v, want %v", user, got, want)
		}
	}
}

// TestTemplateCacheFollowsEdits: CompileTemplates keeps a template until it
// goes stale, a config edited since answers from the edited template, and
// one whose template does not compile answers from the default, for both
// ghost templates.
func TestTemplateCacheFollowsEdits(t *testing.T) {
	c := Default()
	c.Homeserver.Domain = "localhost"
	c.CompileTemplates()
	ghost, display := c.ghostTmpl, c.displayTmpl
	if ghost == nil || display == nil {
		t.Fatal("CompileTemplates kept nothing")
	}
	c.CompileTemplates()
	if c.ghostTmpl != ghost || c.displayTmpl != display {
		t.Error("CompileTemplates replaced templates that were not stale")
	}
	for _, tc := range []struct {
		name, username, displayname string
		localpart, shown            string
	}{
		{"edited", "x_{{.}}", "{{.Name}}!", "x_bob", "Bob!"},
		{"not compiling", "{{.}}", "{{.Nick}}", "dm_bob", "Bob"},
	} {
		c.Ghosts.UsernameTemplate, c.Ghosts.DisplaynameTemplate = tc.username, tc.displayname
		if got := c.GhostLocalpart("bob"); got != tc.localpart {
			t.Errorf("%s: GhostLocalpart = %q, want %q", tc.name, got, tc.localpart)
		}
		if got := c.GhostDisplayname("Bob", "bob"); got != tc.shown {
			t.Errorf("%s: GhostDisplayname = %q, want %q", tc.name, got, tc.shown)
		}
	}
	c.CompileTemplates()
	if c.ghostTmpl != ghost || c.displayTmpl != display {
		t.Error("CompileTemplates replaced the kept templates with ones that do not compile")
	}
	c.Ghosts.UsernameTemplate, c.Ghosts.DisplaynameTemplate = "x_{{.}}", "{{.Name}}!"
	c.CompileTemplates()
	if c.ghostTmpl.source != "x_{{.}}" || c.displayTmpl.source != "{{.Name}}!" {
		t.Errorf("CompileTemplates kept stale templates: %q %q", c.ghostTmpl.source, c.displayTmpl.source)
	}
}

// TestLongDisplaynameKeepsTemplateSuffix: a contact name from the network
// is cut before the template, so the operator's suffix (the mark of a
// bridged user) stays.
func TestLongDisplaynameKeepsTemplateSuffix(t *testing.T) {
	c := Default()
	c.Ghosts.DisplaynameTemplate = "{{.Name}} (XMPP)"
	got := c.GhostDisplayname(strings.Repeat("a", 1000), "a@x")
	if !strings.HasSuffix(got, " (XMPP)") || len([]rune(got)) > MaxDisplaynameRunes+len(" (XMPP)") {
		t.Errorf("displayname of %d runes ends %q", len([]rune(got)), got[len(got)-12:])
	}
}
