package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

// ghostPlaceholder is the only action allowed in ghosts.username_template.
const ghostPlaceholder = "{{.}}"

// ghostTemplate is a compiled ghosts.username_template. The template must be
// constant around its single {{.}}, so it reduces to a prefix and a suffix;
// that is what makes the mapping reversible and expressible as the exclusive
// namespace regex in the registration.
type ghostTemplate struct {
	source, prefix, suffix string
}

// Localparts may only use these characters (the Matrix user id grammar);
// the escaped contact id always does, so only the fixed text needs checking.
var localpartChars = regexp.MustCompile(`^[a-z0-9._=/+-]*$`)

func compileGhostTemplate(src string) (*ghostTemplate, error) {
	if n := strings.Count(src, ghostPlaceholder); n != 1 {
		return nil, fmt.Errorf("must contain %s exactly once, found it %d times: %q", ghostPlaceholder, n, src)
	}
	tmpl, err := template.New("username_template").Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("not a valid template: %w", err)
	}
	// Rendering two different ids and comparing the surroundings proves the
	// rest of the template ignores the id (no second use through another
	// action) without having to inspect the template's parse tree.
	// The markers use characters no valid fixed text can contain, so
	// finding them in the output is unambiguous.
	pre1, suf1, err := renderAround(tmpl, "\x00A\x00")
	if err != nil {
		return nil, err
	}
	pre2, suf2, err := renderAround(tmpl, "\x00BB\x00")
	if err != nil {
		return nil, err
	}
	if pre1 != pre2 || suf1 != suf2 {
		return nil, fmt.Errorf("may use the contact id only through its single %s: %q", ghostPlaceholder, src)
	}
	if pre1+suf1 == "" {
		return nil, fmt.Errorf("needs fixed text around %s, otherwise the bridge would claim every user on the server", ghostPlaceholder)
	}
	if !localpartChars.MatchString(pre1 + suf1) {
		return nil, fmt.Errorf("fixed text may only use a-z 0-9 . _ = - / +: %q", src)
	}
	return &ghostTemplate{source: src, prefix: pre1, suffix: suf1}, nil
}

func renderAround(tmpl *template.Template, marker string) (prefix, suffix string, err error) {
	var sb strings.Builder
	if err := tmpl.Execute(&sb, marker); err != nil {
		return "", "", fmt.Errorf("cannot be rendered: %w", err)
	}
	out := sb.String()
	before, after, found := strings.Cut(out, marker)
	if !found || strings.Contains(after, marker) {
		return "", "", errors.New("must render the contact id exactly once")
	}
	return before, after, nil
}

// CompileTemplates compiles the ghost templates and keeps them, as Validate
// does, for a config that was built or edited in code: otherwise every
// ghost id the bridge computes compiles its template again. A template
// that does not compile is left to the fallback below. Call it before the
// config is shared between goroutines (bridge.New does).
func (c *Config) CompileTemplates() {
	keepCompiled(&c.ghostTmpl, c.Ghosts.UsernameTemplate, compileGhostTemplate)
	keepCompiled(&c.displayTmpl, c.Ghosts.DisplaynameTemplate, compileDisplayTemplate)
}

// compiled is a compiled ghost template (*ghostTemplate, *displayTemplate)
// as its cache in Config sees it.
type compiled interface {
	// compiledFrom reports whether it is the compile of src; a nil one is
	// the compile of nothing.
	compiledFrom(src string) bool
}

// keepCompiled stores the compile of src in *cached unless it is there
// already or src does not compile. Only what is missing or stale is
// written: a config shared by two bridges is not written while the first
// one reads it.
func keepCompiled[T compiled](cached *T, src string, compile func(string) (T, error)) {
	if (*cached).compiledFrom(src) {
		return
	}
	if t, err := compile(src); err == nil {
		*cached = t
	}
}

// compiledOrDefault is cached when it is the compile of src, else a fresh
// compile of src, and for a src that does not compile the compile of the
// default def, so that callers never see an error Validate would already
// have reported. def is a function: building the default config is left to
// that rare case, off the path of every ghost's name.
func compiledOrDefault[T compiled](cached T, src string, def func() string, compile func(string) (T, error)) T {
	if cached.compiledFrom(src) {
		return cached
	}
	if t, err := compile(src); err == nil {
		return t
	}
	t, _ := compile(def())
	return t
}

// ghostTemplate returns the compiled username template. Validate caches it;
// a config that was edited or never validated gets a fresh compile, and an
// invalid template falls back to the default.
func (c *Config) ghostTemplate() *ghostTemplate {
	return compiledOrDefault(c.ghostTmpl, c.Ghosts.UsernameTemplate, func() string { return Default().Ghosts.UsernameTemplate }, compileGhostTemplate)
}

func (t *ghostTemplate) compiledFrom(src string) bool { return t != nil && t.source == src }

// GhostLocalpart is the localpart of the ghost user for a remote contact.
// The contact id is escaped with mautrix's reversible encoding first, so any
// id (e-mail-like, phone numbers, unicode) yields a valid localpart.
func (c *Config) GhostLocalpart(contactID string) string {
	t := c.ghostTemplate()
	return t.prefix + id.EncodeUserLocalpart(contactID) + t.suffix
}

// GhostUserID is the full Matrix user id of a contact's ghost. Very long
// contact ids can exceed Matrix's 255-byte limit; callers that care should
// check len() against id.UserIDMaxLength.
//
// It is id.NewUserID's "@localpart:domain" in one concatenation: it runs for
// every bridged message (the sender's intent), and fmt.Sprintf cost three
// allocations more.
func (c *Config) GhostUserID(contactID string) id.UserID {
	t := c.ghostTemplate()
	return id.UserID("@" + t.prefix + id.EncodeUserLocalpart(contactID) + t.suffix + ":" + c.Homeserver.Domain)
}

// ParseGhostUserID returns the contact id a ghost user id stands for, and
// false for any user that is not one of this bridge's ghosts.
func (c *Config) ParseGhostUserID(userID id.UserID) (string, bool) {
	localpart, server, err := userID.Parse()
	if err != nil || server != c.Homeserver.Domain {
		return "", false
	}
	t := c.ghostTemplate()
	escaped, ok := strings.CutPrefix(localpart, t.prefix)
	if !ok {
		return "", false
	}
	escaped, ok = strings.CutSuffix(escaped, t.suffix)
	if !ok || escaped == "" {
		return "", false
	}
	contactID, err := id.DecodeUserLocalpart(escaped)
	// The decoder also accepts spellings the encoder never produces (such
	// as "=41" for "A"); accepting them would give one contact several
	// ghosts, so only the canonical form counts.
	if err != nil || id.EncodeUserLocalpart(contactID) != escaped {
		return "", false
	}
	return contactID, true
}

// BotUserID is the bridge bot's Matrix user id.
func (c *Config) BotUserID() id.UserID {
	return id.NewUserID(c.Appservice.Bot.Username, c.Homeserver.Domain)
}

// displayTemplate is a compiled ghosts.displayname_template.
type displayTemplate struct {
	source string
	tmpl   *template.Template
}

// displayFields is what ghosts.displayname_template can refer to.
type displayFields struct {
	Name string // the contact's name as the network reports it
	ID   string // the raw, unescaped contact id
}

func compileDisplayTemplate(src string) (*displayTemplate, error) {
	tmpl, err := template.New("displayname_template").Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("not a valid template: %w", err)
	}
	// Unknown fields only fail at execution time, so try it once now.
	if err := tmpl.Execute(&strings.Builder{}, displayFields{Name: "Name", ID: "id"}); err != nil {
		return nil, fmt.Errorf("cannot be rendered (fields are .Name and .ID): %w", err)
	}
	return &displayTemplate{source: src, tmpl: tmpl}, nil
}

// displayTemplate returns the compiled displayname template, cached and
// falling back as ghostTemplate does.
func (c *Config) displayTemplate() *displayTemplate {
	return compiledOrDefault(c.displayTmpl, c.Ghosts.DisplaynameTemplate, func() string { return Default().Ghosts.DisplaynameTemplate }, compileDisplayTemplate)
}

func (t *displayTemplate) compiledFrom(src string) bool { return t != nil && t.source == src }

// MaxDisplaynameRunes bounds a ghost's display name. The network names the
// contact, with no limit but the frame size; the name goes into the ghost's
// profile and into its member event in every room it is in, which the
// homeserver refuses above 64 KiB (and a ghost whose profile it cannot
// copy into a new room's member event cannot create rooms at all).
const MaxDisplaynameRunes = 256

// GhostDisplayname renders the ghost's display name. When the result is
// blank (e.g. the network gave no name) it falls back to the contact id so
// the Matrix client shows something more useful than the escaped localpart.
func (c *Config) GhostDisplayname(name, contactID string) string {
	// Cut before the template, so that the operator's suffix (" (XMPP)",
	// telling a bridged user) stays.
	name = TruncateName(name)
	var sb strings.Builder
	err := c.displayTemplate().tmpl.Execute(&sb, displayFields{Name: name, ID: contactID})
	out := strings.TrimSpace(sb.String())
	if err != nil || out == "" {
		out = contactID
		if strings.TrimSpace(name) != "" {
			out = name
		}
	}
	return out
}

// TruncateName cuts a name from the network to MaxDisplaynameRunes.
func TruncateName(name string) string {
	if utf8.RuneCountInString(name) <= MaxDisplaynameRunes {
		return name
	}
	return TruncateRunes(name, MaxDisplaynameRunes-1)
}

// TruncateRunes cuts s to n runes and an ellipsis when it is longer: text
// from the network bounded where the bridge shows it.
func TruncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// InAppserviceNamespace reports whether userID belongs to the bridge itself:
// the bot, or any user id the registration's ghost namespace claims (also
// spellings ParseGhostUserID does not treat as a contact).
func (c *Config) InAppserviceNamespace(userID id.UserID) bool {
	if userID == c.BotUserID() {
		return true
	}
	localpart, server, err := userID.Parse()
	if err != nil || server != c.Homeserver.Domain {
		return false
	}
	t := c.ghostTemplate()
	return len(localpart) > len(t.prefix)+len(t.suffix) &&
		strings.HasPrefix(localpart, t.prefix) && strings.HasSuffix(localpart, t.suffix)
}
