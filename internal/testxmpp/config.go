package testxmpp

// Option changes the server a Start makes.
type Option func(*options)

type options struct {
	offline bool
}

func defaultOptions() options { return options{offline: true} }

// WithoutOfflineStorage disables offline message storage (mod_offline),
// so that the message archive is the only way a client that was away
// gets what it missed.
func WithoutOfflineStorage() Option {
	return func(o *options) { o.offline = false }
}
