package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// txnRun is one execution of a txn, which later copies of the same command
// wait for instead of acting again.
type txnRun struct {
	done chan struct{}
	res  *connector.Result
	err  *connector.Error
}

// onCmd decodes a command and runs it on its own goroutine, so that a slow
// network call never holds up acks or other commands.
func (c *Client) onCmd(ctx context.Context, s *clientSession, f *connector.Frame) {
	bad := func(reason string) {
		c.sendOn(s, connws.ErrFrame(f.ID, 0, &connector.Error{Code: connector.ErrBadFrame, Message: reason}))
	}
	if f.ID == "" {
		bad("cmd: id is required")
		return
	}
	if f.Op == "" {
		bad("cmd: op is required")
		return
	}
	var cmd connector.Command
	if len(f.Data) != 0 {
		if err := json.Unmarshal(f.Data, &cmd); err != nil {
			bad("cmd: " + err.Error())
			return
		}
	}
	select {
	case c.cmdSlots <- struct{}{}:
	default:
		c.sendOn(s, connws.ErrFrame(f.ID, 0, &connector.Error{Code: connector.ErrRateLimited, Message: "too many commands in progress", Retryable: true}))
		return
	}
	id, op := f.ID, f.Op
	c.cmdWG.Add(1)
	go func() {
		defer c.cmdWG.Done()
		defer func() { <-c.cmdSlots }()
		res, perr := c.execute(ctx, op, &cmd)
		c.reply(s, id, op, res, perr)
	}()
}

// execute runs a command at most once per txn: a txn with a recorded outcome
// is answered from the store, and one that is running right now (the bridge
// re-sent it after a reconnect) waits for that run.
func (c *Client) execute(ctx context.Context, op string, cmd *connector.Command) (*connector.Result, *connector.Error) {
	if cmd.Txn == "" {
		return c.call(ctx, op, cmd)
	}
	run, owner := c.claimTxn(cmd.Txn)
	if !owner {
		select {
		case <-run.done:
			return run.res, run.err
		case <-ctx.Done():
			return nil, &connector.Error{Code: connector.ErrUnknown, Message: "connector is shutting down", Retryable: true}
		}
	}
	defer c.finishTxn(cmd.Txn, run)

	log := c.log.With().Str("op", op).Str("txn", cmd.Txn).Logger()
	// An outcome whose saving failed earlier is only in memory; it counts
	// as recorded, and this is a good moment to try saving it again.
	if o, ok := c.unsavedTxn(cmd.Txn); ok {
		c.flushTxns(ctx)
		log.Debug().Msg("Answering repeated txn from memory")
		run.res, run.err = o.res, o.err
		return o.res, o.err
	}
	// The lookup must not fail just because Run is ending (a cancelled ctx
	// makes a database/sql store fail at once): detached, but bounded.
	sctx, cancel := txnStoreContext(ctx)
	res, perr, found, err := c.opts.Store.TxnResult(sctx, cmd.Txn)
	cancel()
	if err != nil {
		log.Error().Err(err).Msg("Could not look up txn outcome")
		// Nothing was done yet, so a retry is safe.
		run.err = &connector.Error{Code: connector.ErrUnknown, Message: "connector could not check the txn", Retryable: true}
		return nil, run.err
	}
	if found {
		log.Debug().Msg("Answering repeated txn from the store")
		run.res, run.err = res, perr
		return res, perr
	}
	run.res, run.err = c.call(ctx, op, cmd)
	if run.err == nil || !run.err.Retryable {
		c.recordTxn(ctx, cmd.Txn, txnOutcome{res: run.res, err: run.err})
	}
	return run.res, run.err
}

// txnStoreTimeout bounds a txn lookup or save that no longer follows Run's
// context: shutdown waits for it, but not for ever.
const txnStoreTimeout = 5 * time.Second

// txnStoreContext is ctx without its cancellation (SIGTERM cancels Run's
// ctx while handlers finish, and the outcome of a command that already acted
// must still be recorded, or the bridge's re-send after the restart would
// act a second time) and with a timeout of its own.
func txnStoreContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), txnStoreTimeout)
}

// recordTxn saves a txn's final outcome. If the store refuses it, the
// outcome is kept in memory (answering repeats of the txn) and saved again
// later, since a repeat answered from nowhere would act on the network again.
func (c *Client) recordTxn(ctx context.Context, txn string, o txnOutcome) {
	sctx, cancel := txnStoreContext(ctx)
	defer cancel()
	if err := c.opts.Store.SaveTxnResult(sctx, txn, o.res, o.err); err != nil {
		c.log.Error().Err(err).Str("txn", txn).Msg("Could not record txn outcome; keeping it in memory and retrying")
		c.txnMu.Lock()
		c.unsaved[txn] = o
		c.txnMu.Unlock()
	}
}

// unsavedTxn returns an outcome that is waiting to be saved.
func (c *Client) unsavedTxn(txn string) (txnOutcome, bool) {
	c.txnMu.Lock()
	defer c.txnMu.Unlock()
	o, ok := c.unsaved[txn]
	return o, ok
}

// flushTxns tries again to save the outcomes the store refused before. It
// runs before each connection and when Run ends, so an outcome reaches the
// store once the store works again, and is lost only if it never does
// before the process exits.
func (c *Client) flushTxns(ctx context.Context) {
	c.txnMu.Lock()
	pending := maps.Clone(c.unsaved)
	c.txnMu.Unlock()
	for txn, o := range pending {
		sctx, cancel := txnStoreContext(ctx)
		err := c.opts.Store.SaveTxnResult(sctx, txn, o.res, o.err)
		cancel()
		if err != nil {
			c.log.Error().Err(err).Str("txn", txn).Int("unsaved", len(pending)).Msg("Still cannot record txn outcome; a restart now would let a repeat of it act again")
			return
		}
		c.txnMu.Lock()
		delete(c.unsaved, txn)
		c.txnMu.Unlock()
	}
}

// claimTxn returns the run of txn, and whether the caller owns (must perform) it.
func (c *Client) claimTxn(txn string) (*txnRun, bool) {
	c.txnMu.Lock()
	defer c.txnMu.Unlock()
	if run, ok := c.txnRuns[txn]; ok {
		return run, false
	}
	run := &txnRun{done: make(chan struct{})}
	c.txnRuns[txn] = run
	return run, true
}

func (c *Client) finishTxn(txn string, run *txnRun) {
	c.txnMu.Lock()
	delete(c.txnRuns, txn)
	c.txnMu.Unlock()
	close(run.done)
}

// call runs the handler, turning its error and any panic into an *Error.
func (c *Client) call(ctx context.Context, op string, cmd *connector.Command) (res *connector.Result, perr *connector.Error) {
	if c.opts.Handle == nil {
		return nil, &connector.Error{Code: connector.ErrUnsupported, Message: "this connector handles no commands"}
	}
	defer func() {
		if p := recover(); p != nil {
			c.log.Error().Str("op", op).Any("panic", p).Msg("Command handler panicked")
			res, perr = nil, &connector.Error{Code: connector.ErrUnknown, Message: fmt.Sprintf("%s failed inside the connector", op)}
		}
	}()
	res, err := c.opts.Handle(ctx, op, cmd)
	if err != nil {
		return nil, asProtocolError(err)
	}
	if res == nil {
		res = &connector.Result{}
	}
	return res, nil
}

// reply answers on the session the command came in on. If that session is
// gone, so is the bridge's wait; it re-sends the command on the next one.
func (c *Client) reply(s *clientSession, id, op string, res *connector.Result, perr *connector.Error) {
	if perr != nil {
		c.sendOn(s, connws.ErrFrame(id, 0, perr))
		return
	}
	b, err := connws.EncodeFrame(connector.Frame{Type: connector.TypeRes, ID: id}, res)
	if err == nil && int64(len(b)) > s.maxFrame {
		err = fmt.Errorf("%s result is %d bytes, more than the %d a frame may have", op, len(b), s.maxFrame)
	}
	if err != nil {
		c.log.Error().Err(err).Str("op", op).Msg("Cannot send command result")
		c.sendOn(s, connws.ErrFrame(id, 0, &connector.Error{Code: connector.ErrTooLarge, Message: err.Error()}))
		return
	}
	c.sendOn(s, b)
}
