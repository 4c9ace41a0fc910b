package testxmpp

// Option changes the server a Start makes.
type Option func(*options)

type options struct {
	offline     bool
	uploadLimit int64
	noUpload    bool
	noArchive   bool
	startTLS    bool
}

func defaultOptions() options { return options{offline: true} }

// WithoutOfflineStorage disables offline message storage (mod_offline),
// so that the message archive is the only way a client that was away
// gets what it missed.
func WithoutOfflineStorage() Option {
	return func(o *options) { o.offline = false }
}

// WithUploadLimit sets the largest file the server's HTTP File Upload
// service (XEP-0363, on UploadDomain) accepts, in bytes.
func WithUploadLimit(n int64) Option {
	return func(o *options) { o.uploadLimit = n }
}

// WithoutUpload starts the server without an HTTP File Upload service.
func WithoutUpload() Option {
	return func(o *options) { o.noUpload = true }
}

// WithoutArchive starts the server without a message archive (XEP-0313),
// like a server that has none: offline storage is then how a client that
// was away gets what it missed.
func WithoutArchive() Option {
	return func(o *options) { o.noArchive = true }
}

// WithStartTLS starts the server with a self-signed certificate for Domain,
// made for the test, and requires STARTTLS of every client, as a public
// server does. Server.Roots trusts the certificate; Dial uses it.
func WithStartTLS() Option {
	return func(o *options) { o.startTLS = true }
}
