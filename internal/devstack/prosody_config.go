package devstack

import (
	"fmt"
	"strings"
)

// ProsodyDomain is the only virtual host of every Prosody devstack runs.
const ProsodyDomain = "localhost"

// UploadDomain is the HTTP File Upload (XEP-0363) component of every
// Prosody devstack runs.
const UploadDomain = "upload." + ProsodyDomain

// DefaultUploadLimit is the largest file the upload service accepts unless
// ProsodyOptions say otherwise (Prosody's own default).
const DefaultUploadLimit = 10 << 20

// prosodyConfig renders the whole Prosody configuration for one server.
//
// Everything Prosody would otherwise put under /var or /etc points into
// dir, so servers share nothing. Encryption is off unless opts name a
// certificate, because the server only listens on loopback and a private
// CA is one more moving part; SCRAM still keeps the password off the wire.
// With a certificate, STARTTLS is offered and required, as on a public
// server.
//
// HTTP File Upload (XEP-0363) is Prosody 0.12's mod_http_file_share on the
// component UploadDomain. Its HTTP server listens on loopback only, and
// http_external_url makes the slot URLs point there; the component's
// http_host is the host those URLs name (Prosody routes HTTP requests by
// the Host header without its port), so the request finds the module.
// uploadLimit 0 leaves the upload service out; opts.NoArchive leaves out
// the message archive (mod_mam).
func prosodyConfig(opts ProsodyOptions, port, httpPort int, uploadLimit int64) string {
	dir := opts.Dir
	modules := `  "roster"; "saslauth"; "disco"; "carbons"; "pep"; "vcard_legacy"; "ping"; "blocklist"; "private";`
	if !opts.NoArchive {
		modules += ` "mam";`
	}
	// Prosody loads offline even when it is not listed; only
	// modules_disabled keeps it out.
	disabled := `"s2s"; "posix";`
	encryption := []string{"c2s_require_encryption = false", "allow_unencrypted_plain_auth = true"}
	if opts.TLSCert == "" {
		disabled += ` "tls";`
	} else {
		modules += ` "tls";`
		encryption = []string{
			"c2s_require_encryption = true",
			fmt.Sprintf("ssl = { certificate = %q; key = %q }", opts.TLSCert, opts.TLSKey),
		}
	}
	if !opts.NoOffline {
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
		fmt.Sprintf("http_ports = { %d }", httpPort),
		`http_interfaces = { "127.0.0.1" }`,
		"https_ports = { }",
		fmt.Sprintf("http_external_url = %q", fmt.Sprintf("http://127.0.0.1:%d/", httpPort)),
		`authentication = "internal_plain"`,
		`storage = "internal"`,
		// Keep every message: catch-up after downtime reads the archive.
		`archive_expires_after = "never"`,
		"default_archive_policy = true",
		// The default c2s rate limit (mod_limits) is not loaded, but make
		// sure nothing throttles a burst of messages.
		"limits = { }",
	}
	lines = append(lines, encryption...)
	lines = append(lines,
		`modules_enabled = {`,
		modules,
		`}`,
		"modules_disabled = { "+disabled+" }",
		`VirtualHost "`+ProsodyDomain+`"`,
	)
	if uploadLimit == 0 {
		return strings.Join(lines, "\n") + "\n"
	}
	lines = append(lines,
		// A subdomain of the host: mod_disco lists it in the host's
		// disco#items, which is how clients find the upload service, and
		// mod_http_file_share lets the host's users upload by default.
		`Component "`+UploadDomain+`" "http_file_share"`,
		`  http_host = "127.0.0.1"`,
		fmt.Sprintf("  http_file_share_size_limit = %d", uploadLimit),
		// The default daily quota is ten uploads of the limit; tests and
		// demos that send many files must not run into it.
		fmt.Sprintf("  http_file_share_daily_quota = %d", 1000*uploadLimit),
	)
	return strings.Join(lines, "\n") + "\n"
}
