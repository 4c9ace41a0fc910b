package connector

import (
	"context"
	"encoding/json"
	"fmt"
)

// txnRun is one execution of a txn, which later copies of the same command
// wait for instead of acting again.
type txnRun struct {
	done chan struct{}
	res  *Result
	err  *Error
}

// onCmd decodes a command and runs it on its own goroutine, so that a slow
// network call never holds up acks or other commands.
func (c *Client) onCmd(ctx context.Context, s *clientSession, f *Frame) {
	bad := func(reason string) {
		c.sendOn(s, errFrame(f.ID, 0, &Error{Code: ErrBadFrame, Message: reason}))
	}
	if f.ID == "" {
		bad("cmd: id is required")
		return
	}
	if f.Op == "" {
		bad("cmd: op is required")
		return
	}
	var cmd Command
	if len(f.Data) != 0 {
		if err := json.Unmarshal(f.Data, &cmd); err != nil {
			bad("cmd: " + err.Error())
			return
		}
	}
	select {
	case c.cmdSlots <- struct{}{}:
	default:
		c.sendOn(s, errFrame(f.ID, 0, &Error{Code: ErrRateLimited, Message: "too many commands in progress", Retryable: true}))
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
func (c *Client) execute(ctx context.Context, op string, cmd *Command) (*Result, *Error) {
	if cmd.Txn == "" {
		return c.call(ctx, op, cmd)
	}
	run, owner := c.claimTxn(cmd.Txn)
	if !owner {
		select {
		case <-run.done:
			return run.res, run.err
		case <-ctx.Done():
			return nil, &Error{Code: ErrUnknown, Message: "connector is shutting down", Retryable: true}
		}
	}
	defer c.finishTxn(cmd.Txn, run)

	log := c.log.With().Str("op", op).Str("txn", cmd.Txn).Logger()
	res, perr, found, err := c.opts.Store.TxnResult(ctx, cmd.Txn)
	if err != nil {
		log.Error().Err(err).Msg("Could not look up txn outcome")
		// Nothing was done yet, so a retry is safe.
		run.err = &Error{Code: ErrUnknown, Message: "connector could not check the txn", Retryable: true}
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
func (c *Client) call(ctx context.Context, op string, cmd *Command) (res *Result, perr *Error) {
	if c.opts.Handle == nil {
		return nil, &Error{Code: ErrUnsupported, Message: "this connector handles no commands"}
	}
	defer func() {
		if p := recover(); p != nil {
			c.log.Error().Str("op", op).Any("panic", p).Msg("Command handler panicked")
			res, perr = nil, &Error{Code: ErrUnknown, Message: fmt.Sprintf("%s failed inside the connector", op)}
		}
	}()
	res, err := c.opts.Handle(ctx, op, cmd)
	if err != nil {
		return nil, asProtocolError(err)
	}
	if res == nil {
		res = &Result{}
	}
	return res, nil
}

// reply answers on the session the command came in on. If that session is
// gone, so is the bridge's wait; it re-sends the command on the next one.
func (c *Client) reply(s *clientSession, id, op string, res *Result, perr *Error) {
	if perr != nil {
		c.sendOn(s, errFrame(id, 0, perr))
		return
	}
	b, err := encodeFrame(Frame{Type: TypeRes, ID: id}, res)
	if err == nil && int64(len(b)) > s.maxFrame {
		err = fmt.Errorf("%s result is %d bytes, more than the %d a frame may have", op, len(b), s.maxFrame)
	}
	if err != nil {
		c.log.Error().Err(err).Str("op", op).Msg("Cannot send command result")
		c.sendOn(s, errFrame(id, 0, &Error{Code: ErrTooLarge, Message: err.Error()}))
		return
	}
	c.sendOn(s, b)
}
