package sdk

import (
	"context"
	"encoding/json"
	"fmt"

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
	res, perr, found, err := c.opts.Store.TxnResult(ctx, cmd.Txn)
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
		if err := c.opts.Store.SaveTxnResult(ctx, cmd.Txn, run.res, run.err); err != nil {
			log.Error().Err(err).Msg("Could not record txn outcome; a retry of this command would act again")
		}
	}
	return run.res, run.err
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
