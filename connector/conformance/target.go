package conformance

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// Target is the connector under test. The suite calls its methods one at a
// time, from the goroutine that called Run, so a test's Target may use
// t.Fatal.
type Target interface {
	// Start starts the connector, or starts it again after Stop, pointed at
	// the bridge url (ws://host:port/_connector/v1) with token. It need
	// not wait for the connection: the suite does.
	Start(ctx context.Context, url, token string) error
	// Stop stops the connector process; its durable state must survive
	// for the next Start. The suite uses Stop and Start to test replay
	// across restarts (unless the target is a Restarter), and Run ends
	// with Stop.
	Stop(ctx context.Context) error
	// Produce makes the connector emit n new events, for example by
	// sending it n messages on its network. It must return without
	// waiting for the events to reach the bridge: the suite may be
	// withholding acks, so the connector's flow control can hold them.
	Produce(ctx context.Context, n int) error
	// Login is a login the suite may address commands to; "" means the
	// first login of the connector's hello.
	Login() string
	// Chat is a chat of Login that commands may be sent to; nil skips the
	// checks that send messages.
	Chat() *connector.Chat
}

// NetworkObserver is implemented by targets that can see what a connector
// put on its network. With it, the txn checks count the messages a repeated
// command produced instead of trusting the protocol's answers alone.
type NetworkObserver interface {
	// Delivered returns how many messages with exactly this text the
	// connector has sent to the network so far.
	Delivered(ctx context.Context, text string) (int, error)
}

// Restarter is implemented by targets that restart the connector in one
// step (a service manager's restart, say) rather than Stop and Start. The
// replay-restart check then calls Restart instead of the pair.
type Restarter interface {
	Restart(ctx context.Context, url, token string) error
}

// Result is the outcome of one check.
type Result struct {
	Check string
	Pass  bool
	// Skipped says the check did not run (Pass is false then), for
	// example because the target has no chat or an earlier check found no
	// connection to work with.
	Skipped bool
	// Reason says what was observed: the evidence of a failure, or what
	// a pass rests on.
	Reason   string
	Duration time.Duration
}

// Status is PASS, FAIL or SKIP.
func (r Result) Status() string {
	switch {
	case r.Skipped:
		return "SKIP"
	case r.Pass:
		return "PASS"
	}
	return "FAIL"
}

func (r Result) String() string {
	if r.Skipped {
		return fmt.Sprintf("%s %s: %s", r.Status(), r.Check, r.Reason)
	}
	return fmt.Sprintf("%s %s (%s): %s", r.Status(), r.Check, r.Duration.Round(time.Millisecond), r.Reason)
}

// Options tunes Run. Zero values take the defaults.
type Options struct {
	// Listen is the address the suite's bridge side listens on (default
	// 127.0.0.1:0, a free port).
	Listen string
	// Token is the bearer token the connector must present (default: a
	// random one, passed to Target.Start).
	Token string
	// AckedSeq is the acked_seq of the first welcome: 0 for a connector
	// that starts with an empty store, or the highest seq it has sent to
	// a bridge before (default 0).
	AckedSeq int64
	// MaxInFlight is welcome.max_in_flight (default 256); SmallWindow is
	// the one the max-in-flight check uses (default 2).
	MaxInFlight int
	SmallWindow int
	// Timeout bounds each wait for something the connector should do:
	// connect, answer, emit or resend events (default 5s). Give an
	// operator who produces events by hand a minute or more.
	Timeout time.Duration
	// Quiet is how long nothing must arrive to show that the connector
	// holds back (default 200ms).
	Quiet time.Duration
	// MaxFrameBytes is announced in welcome and enforced on reads
	// (default 1 MiB).
	MaxFrameBytes int64
	// Skip names checks not to run (for example replay-restart for a
	// connector that cannot be restarted).
	Skip []string
	// Out, if set, gets one PASS/FAIL/SKIP line per check as it finishes.
	Out io.Writer
}

func (o *Options) setDefaults() {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Token == "" {
		o.Token = randomToken()
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = connector.DefaultMaxInFlight
	}
	if o.SmallWindow <= 0 {
		o.SmallWindow = 2
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Quiet <= 0 {
		o.Quiet = 200 * time.Millisecond
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = connector.DefaultMaxFrameBytes
	}
}
