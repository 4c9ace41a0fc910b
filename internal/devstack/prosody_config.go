package devstack

import (
	"fmt"
	"strings"
)

// ProsodyDomain is the only virtual host of every Prosody devstack runs.
const ProsodyDomain = "localhost"

// prosodyConfig renders the whole Prosody configuration for one server.
//
// Everything Prosody would otherwise put under /var or /etc points into
// dir, so servers share nothing. Encryption is off because the server only
// listens on loopback and a private CA would be one more moving part;
// SCRAM still keeps the password off the wire.
func prosodyConfig(dir string, port int, offline bool) string {
	modules := `  "roster"; "saslauth"; "disco"; "carbons"; "pep"; "vcard_legacy"; "mam"; "ping"; "blocklist"; "private";`
	// Prosody loads offline even when it is not listed; only
	// modules_disabled keeps it out.
	disabled := `"s2s"; "tls"; "posix";`
	if offline {
		modules += ` "offline";`
	} else {
		disabled += ` "offline";`
	}
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	lines := []string{
		"pidfile = " + q(dir+"/prosody.pid"),
		"data_path = " + q(dir+"/data"),
		"certificates = " + q(dir+"/certs"),
		`log = { { levels = { min = "debug" }, to = "file", filename = ` + q(dir+"/prosody.log") + ` } }`,
		`interfaces = { "127.0.0.1" }`,
		fmt.Sprintf("c2s_ports = { %d }", port),
		"c2s_direct_tls_ports = { }",
		"legacy_ssl_ports = { }",
		"s2s_ports = { }",
		"http_ports = { }",
		"https_ports = { }",
		`authentication = "internal_plain"`,
		`storage = "internal"`,
		"c2s_require_encryption = false",
		"allow_unencrypted_plain_auth = true",
		// Keep every message: catch-up after downtime reads the archive.
		`archive_expires_after = "never"`,
		"default_archive_policy = true",
		// The default c2s rate limit (mod_limits) is not loaded, but make
		// sure nothing throttles a burst of messages.
		"limits = { }",
		`modules_enabled = {`,
		modules,
		`}`,
		"modules_disabled = { " + disabled + " }",
		`VirtualHost "` + ProsodyDomain + `"`,
	}
	return strings.Join(lines, "\n") + "\n"
}
