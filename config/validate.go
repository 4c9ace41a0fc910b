package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/netguard"
)

// validationMode separates running the bridge from generating its
// registration: -g is what creates the appservice tokens, so it cannot
// demand them.
type validationMode int

const (
	modeRun validationMode = iota
	modeRegistration
)

var (
	databaseTypes = []string{"sqlite3-fk-wal", "sqlite3", "postgres"}
	logLevels     = []string{"trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled"}
	logFormats    = []string{"pretty", "json"}
)

// Validate checks everything the bridge needs to run and returns the first
// problem as an *Error. It also caches the compiled templates.
func (c *Config) Validate() error { return c.validate(modeRun) }

// ValidateForRegistration is Validate without the checks for the secrets that
// generating the registration produces or that are only needed at run time
// (appservice tokens, connector token).
func (c *Config) ValidateForRegistration() error { return c.validate(modeRegistration) }

func (c *Config) validate(mode validationMode) error {
	v := &validator{c: c, mode: mode}
	v.homeserver()
	v.appservice()
	v.ghosts()
	v.database()
	v.connector()
	v.doublePuppet()
	v.permissions()
	v.bridge()
	v.metrics()
	v.secret("provisioning.shared_secret", c.Provisioning.SharedSecret)
	v.logging()
	v.ha()
	v.encryption()
	return v.err
}

// validator keeps only the first problem: the bridge reports one line and
// exits, and later problems are often consequences of the first.
type validator struct {
	c    *Config
	mode validationMode
	err  error
}

func (v *validator) fail(key, format string, args ...any) {
	if v.err != nil {
		return
	}
	v.err = &Error{File: v.c.Path, Key: key, Message: fmt.Sprintf(format, args...)}
}

func (v *validator) required(key, value string) bool {
	if value != "" {
		return true
	}
	v.fail(key, "%s", v.missingMessage(key))
	return false
}

// missingMessage tells "absent" from "present but empty", and adds a hint when an unknown sibling key exists, because a
// misspelt key shows up as exactly that pair: a missing key and an unknown
// one next to it.
func (v *validator) missingMessage(key string) string {
	if _, present := v.c.presentKeys[key]; present {
		return "required but empty"
	}
	parent := ""
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		parent = key[:i+1]
	}
	for _, w := range v.c.unknownKeys {
		rest, ok := strings.CutPrefix(w.Key, parent)
		if ok && !strings.Contains(rest, ".") {
			return fmt.Sprintf("required but missing (is %q on line %d a typo?)", w.Key, w.Line)
		}
	}
	return "required but missing"
}

func (v *validator) httpURL(key, value string) {
	if !v.required(key, value) {
		return
	}
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.fail(key, "not a valid http(s) URL: %q", value)
	}
}

func (v *validator) positive(key string, value int64) {
	if value <= 0 {
		v.fail(key, "must be greater than 0, got %d", value)
	}
}

func (v *validator) notNegative(key string, value int64) {
	if value < 0 {
		v.fail(key, "must not be negative, got %d", value)
	}
}

func (v *validator) oneOf(key, value string, allowed []string) {
	if !slices.Contains(allowed, value) {
		v.fail(key, "unknown value %q (want one of %s)", value, strings.Join(allowed, ", "))
	}
}

func (v *validator) homeserver() {
	hs := v.c.Homeserver
	v.httpURL("homeserver.address", hs.Address)
	if v.required("homeserver.domain", hs.Domain) && !id.ValidateServerName(hs.Domain) {
		v.fail("homeserver.domain", "not a valid Matrix server name: %q", hs.Domain)
	}
}

func (v *validator) appservice() {
	as := v.c.Appservice
	v.httpURL("appservice.address", as.Address)
	if _, present := v.c.presentKeys["appservice.port"]; as.Port == 0 && !present {
		v.fail("appservice.port", "%s", v.missingMessage("appservice.port"))
	} else if as.Port < 1 || as.Port > 65535 {
		v.fail("appservice.port", "must be between 1 and 65535, got %d", as.Port)
	}
	v.required("appservice.id", as.ID)
	if v.required("appservice.bot.username", as.Bot.Username) {
		if err := id.ValidateUserLocalpart(as.Bot.Username); err != nil {
			v.fail("appservice.bot.username", "not a valid Matrix localpart (a-z 0-9 . _ = - / +): %q", as.Bot.Username)
		}
	}
	if as.Bot.Avatar != "" {
		if _, err := id.ParseContentURI(as.Bot.Avatar); err != nil {
			v.fail("appservice.bot.avatar", "not an mxc:// URI: %q", as.Bot.Avatar)
		}
	}
	// Without a token a user could never start a chat with a contact
	// the bridge has not seen (the homeserver refuses to invite a user
	// that does not exist), and without a refill never after the first few.
	if q := as.NewGhostQueries; q.Burst < 1 {
		v.fail("appservice.new_ghost_queries.burst", "must be at least 1, got %d", q.Burst)
	} else if q.Every <= 0 {
		v.fail("appservice.new_ghost_queries.every", "must be greater than 0, got %s", q.Every)
	}
	if v.mode == modeRun {
		const hint = `empty; run the bridge with -g first to generate the registration and its tokens`
		if as.ASToken == "" {
			v.fail("appservice.as_token", hint)
		}
		if as.HSToken == "" {
			v.fail("appservice.hs_token", hint)
		}
	}
}

func (v *validator) ghosts() {
	g := v.c.Ghosts
	tmpl, err := compileGhostTemplate(g.UsernameTemplate)
	if err != nil {
		v.fail("ghosts.username_template", "%v", err)
		return
	}
	v.c.ghostTmpl = tmpl
	if _, isGhost := v.c.ParseGhostUserID(v.c.BotUserID()); isGhost {
		v.fail("appservice.bot.username", "%q is inside the ghost namespace of ghosts.username_template %q; pick a name that does not match it",
			v.c.Appservice.Bot.Username, g.UsernameTemplate)
	}
	display, err := compileDisplayTemplate(g.DisplaynameTemplate)
	if err != nil {
		v.fail("ghosts.displayname_template", "%v", err)
		return
	}
	v.c.displayTmpl = display
}

func (v *validator) database() {
	db := v.c.Database
	if v.required("database.type", db.Type) {
		v.oneOf("database.type", db.Type, databaseTypes)
	}
	v.required("database.uri", db.URI)
	v.notNegative("database.max_open_conns", int64(db.MaxOpenConns))
	v.notNegative("database.max_idle_conns", int64(db.MaxIdleConns))
}

func (v *validator) connector() {
	cc := v.c.Connector
	if v.required("connector.listen", cc.Listen) {
		v.listenAddress(cc.Listen)
	}
	if v.mode == modeRun && cc.Token == "" && len(cc.Connectors) == 0 {
		v.fail("connector.token", "empty, and the bridge refuses to accept connectors without a token; "+
			"set connector.token in %s or the DMBRIDGE_CONNECTOR_TOKEN environment variable to a long random string "+
			"(e.g. from `openssl rand -hex 32`) and give the connector the same token", orDefault(v.c.Path, "the config file"))
	}
	v.secret("connector.token", cc.Token)
	v.connectorAccess()
	v.positive("connector.max_frame_bytes", cc.MaxFrameBytes)
	v.positive("connector.max_in_flight", int64(cc.MaxInFlight))
	if cc.CommandTimeout <= 0 {
		v.fail("connector.command_timeout", "must be longer than 0s, got %s", cc.CommandTimeout)
	}
}

func (v *validator) listenAddress(listen string) {
	host, portText, err := net.SplitHostPort(listen)
	port, portErr := strconv.Atoi(portText)
	if err != nil || portErr != nil || port < 1 || port > 65535 {
		v.fail("connector.listen", "not a host:port address: %q", listen)
		return
	}
	// Both listeners on one port would make the second one fail at start
	// with a less obvious "address already in use".
	as := v.c.Appservice
	if port == as.Port && (host == as.Hostname || isWildcardHost(host) || isWildcardHost(as.Hostname)) {
		v.fail("connector.listen", "%q overlaps the appservice listener on port %d; use another port", listen, as.Port)
	}
}

func isWildcardHost(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

func (v *validator) doublePuppet() {
	for _, server := range sortedKeys(v.c.DoublePuppet.Secrets) {
		key := joinMapKey("double_puppet.secrets", server)
		if !id.ValidateServerName(server) {
			v.fail(key, "not a valid Matrix server name: %q", server)
		}
		token, ok := strings.CutPrefix(v.c.DoublePuppet.Secrets[server], "as_token:")
		if !ok || token == "" {
			v.fail(key, `must be "as_token:" followed by the token of an appservice on that server`)
		}
	}
	if v.c.DoublePuppet.Sync && len(v.c.DoublePuppet.Secrets) == 0 {
		v.fail("double_puppet.sync", "needs double_puppet.secrets: only double-puppeted users can be followed")
	}
}

func (v *validator) permissions() {
	for _, key := range sortedKeys(v.c.Permissions) {
		if problem := checkPermissionKey(key); problem != "" {
			v.fail(joinMapKey("permissions", key), "%s", problem)
		}
		if level := v.c.Permissions[key]; level < LevelBlock || level > LevelAdmin {
			v.fail(joinMapKey("permissions", key), "unknown permission level %d", int(level))
		}
	}
}

// MaxBackfillLimit bounds bridge.backfill.initial_limit.
const MaxBackfillLimit = 1000

// MaxSyncRecentChats bounds bridge.backfill.sync_recent_chats: each chat is
// a room created at once.
const MaxSyncRecentChats = 100

func (v *validator) bridge() {
	b := v.c.Bridge
	v.positive("bridge.max_media_bytes", b.MaxMediaBytes)
	v.notNegative("bridge.inline_media_bytes", b.InlineMediaBytes)
	if b.MDirectRepairInterval < 0 {
		v.fail("bridge.m_direct_repair_interval", "must not be negative (0 disables the repair pass), got %s", b.MDirectRepairInterval)
	}
	v.positive("bridge.homeserver_concurrency", int64(b.HomeserverConcurrency))
	for i, entry := range b.MediaFetchAllow {
		if err := netguard.ValidateEntry(entry); err != nil {
			v.fail(fmt.Sprintf("bridge.media_fetch_allow[%d]", i), "%v", err)
		}
	}
	if b.InDoubtGrace <= 0 {
		v.fail("bridge.in_doubt_grace", "must be greater than 0, got %s", b.InDoubtGrace)
	}
	if b.LoginAlertAfter < 0 {
		v.fail("bridge.login_alert_after", "must not be negative (0 turns disconnection alerts off), got %s", b.LoginAlertAfter)
	}
	if b.RetryMaxDelay <= 0 {
		v.fail("bridge.retry_max_delay", "must be greater than 0, got %s", b.RetryMaxDelay)
	}
	// One backfill is one command; the connector answers with one frame, so
	// a limit far beyond what fits there is a typo, not a wish.
	if b.Backfill.InitialLimit < 0 || b.Backfill.InitialLimit > MaxBackfillLimit {
		v.fail("bridge.backfill.initial_limit", "must be between 0 (off) and %d, got %d", MaxBackfillLimit, b.Backfill.InitialLimit)
	}
	if b.Backfill.SyncRecentChats < 0 || b.Backfill.SyncRecentChats > MaxSyncRecentChats {
		v.fail("bridge.backfill.sync_recent_chats", "must be between 0 (off) and %d, got %d", MaxSyncRecentChats, b.Backfill.SyncRecentChats)
	}
	if b.Backfill.MaxAge < 0 {
		v.fail("bridge.backfill.max_age", "must not be negative (0 means no limit), got %s", b.Backfill.MaxAge)
	}
}

func (v *validator) metrics() {
	listen := v.c.Metrics.Listen
	if listen == "" {
		return
	}
	host, portText, err := net.SplitHostPort(listen)
	port, portErr := strconv.Atoi(portText)
	if err != nil || portErr != nil || port < 1 || port > 65535 {
		v.fail("metrics.listen", "not a host:port address: %q (leave it empty to disable metrics)", listen)
		return
	}
	overlaps := func(otherHost string, otherPort int) bool {
		return port == otherPort && (host == otherHost || isWildcardHost(host) || isWildcardHost(otherHost))
	}
	if as := v.c.Appservice; overlaps(as.Hostname, as.Port) {
		v.fail("metrics.listen", "%q overlaps the appservice listener on port %d; use another port", listen, as.Port)
	}
	if cHost, cPort, err := net.SplitHostPort(v.c.Connector.Listen); err == nil {
		if n, err := strconv.Atoi(cPort); err == nil && n != 0 && overlaps(cHost, n) {
			v.fail("metrics.listen", "%q overlaps the connector listener %q; use another port", listen, v.c.Connector.Listen)
		}
	}
}

func (v *validator) ha() {
	h := v.c.HA
	if !h.Enabled {
		return
	}
	if v.c.Database.Type != "postgres" {
		v.fail("ha.enabled", "needs database.type postgres (SQLite is single-process), got %q", v.c.Database.Type)
	}
	if h.Lease < Duration(time.Second) {
		v.fail("ha.lease", "must be at least 1s, got %s", h.Lease)
	}
	if h.Renew <= 0 || h.Renew*2 > h.Lease {
		v.fail("ha.renew", "must be longer than 0s and at most half of ha.lease (%s), got %s", h.Lease, h.Renew)
	}
}

func (v *validator) encryption() {
	e := v.c.Encryption
	if e.Default && !e.Allow {
		v.fail("encryption.default", "needs encryption.allow: true")
	}
	if e.Require && !e.Allow {
		v.fail("encryption.require", "needs encryption.allow: true")
	}
	if e.Appservice && !e.Allow {
		v.fail("encryption.appservice", "needs encryption.allow: true")
	}
}

func (v *validator) logging() {
	l := v.c.Logging
	v.oneOf("logging.level", l.Level, logLevels)
	v.oneOf("logging.format", l.Format, logFormats)
	if l.SummaryInterval < 0 {
		v.fail("logging.summary_interval", "must not be negative (0 turns the summary off), got %s", l.SummaryInterval)
	}
}

// sortedKeys makes the reported problem independent of map order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
