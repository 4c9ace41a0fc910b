package server

import (
	"errors"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// ackNote tells the writer that everything up to seq is stored and may be
// acked. fresh counts the events newly stored up to seq; 0 marks the answer
// to a replay.
type ackNote struct {
	seq   int64
	fresh int
}

// send queues a frame for the writer. It gives up silently once the writer
// has stopped: the connection is going away and the frame with it.
func (c *serverConn) send(b []byte) bool {
	select {
	case c.out <- outFrame{data: b}:
		return true
	case <-c.writerDone:
		return false
	}
}

// sendErr queues an err frame pointing at refs.
func (c *serverConn) sendErr(refs connws.Refs, e *connector.Error) {
	c.send(connws.ErrFrame(refs.ID, refs.Seq, e))
}

// sendClose queues a close behind the frames already queued, so an err frame
// explaining the close reaches the peer first. Reader goroutine only.
func (c *serverConn) sendClose(code int, reason string) {
	c.closeQueued = true
	select {
	case c.out <- outFrame{closeCode: code, closeReason: reason}:
	case <-c.writerDone:
		c.closeWith(code, reason)
	}
}

// noteReplay answers a replayed event with the current cumulative ack.
// The caller makes sure something is stored, so the ack is never 0.
func (c *serverConn) noteReplay() {
	c.noteAck(ackNote{seq: c.committed.Load()})
}

// noteStored tells the writer that the committer stored n more events, up
// to seq. Committer goroutine only, so notes arrive in seq order.
func (c *serverConn) noteStored(seq int64, n int) {
	select {
	case c.acks <- ackNote{seq: seq, fresh: n}:
	case <-c.writerDone:
		// No ack can go out any more; the committer already woke the
		// bridge's workers (commitLoop).
	}
}

func (c *serverConn) noteAck(n ackNote) {
	select {
	case c.acks <- n:
	case <-c.writerDone:
	}
}

// writeLoop is the only goroutine that writes data frames, as gorilla
// requires. Control frames (pings, close) go through WriteControl, which may
// run concurrently with it.
func (c *serverConn) writeLoop() {
	defer close(c.writerDone)
	opts := &c.srv.opts
	ping := time.NewTicker(opts.PingInterval)
	defer ping.Stop()

	var (
		timer  *time.Timer
		timerC <-chan time.Time
		ackSeq int64
		unsent int // events stored or replayed since the last ack frame
	)
	take := func(n ackNote) {
		ackSeq = max(ackSeq, n.seq)
		unsent += max(n.fresh, 1)
	}
	flush := func() error {
		if timer != nil {
			timer.Stop()
			timer, timerC = nil, nil
		}
		if unsent == 0 {
			return nil
		}
		err := c.write(ackFrame(ackSeq))
		unsent = 0
		return err
	}
	handle := func(o outFrame) error {
		if o.closeCode != 0 {
			// Frames before the close must not wait behind the ack timer.
			err := flush()
			c.closeWith(o.closeCode, o.closeReason)
			return err
		}
		return c.write(o.data)
	}

	for {
		var err error
		select {
		case <-c.stopWriter:
			// Whatever the reader queued before it stopped still goes out;
			// in particular the close that explains why it stopped.
		drain:
			for {
				select {
				case o := <-c.out:
					_ = handle(o)
				case n := <-c.acks:
					take(n)
				default:
					break drain
				}
			}
			_ = flush()
			return
		case o := <-c.out:
			err = handle(o)
		case n := <-c.acks:
			take(n)
			if unsent >= opts.AckEvery {
				err = flush()
			} else if timerC == nil {
				timer = time.NewTimer(opts.AckDelay)
				timerC = timer.C
			}
		case <-timerC:
			timer, timerC = nil, nil
			err = flush()
		case <-ping.C:
			if err = c.gate(); err == nil {
				err = c.ws.WriteControl(websocket.PingMessage, nil, connws.Deadline(connws.WriteWait))
			}
		}
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			c.log.Debug().Err(err).Msg("Write to connector failed")
			// Make the reader notice: it owns the teardown.
			_ = c.ws.NetConn().Close()
			return
		}
	}
}

// gate is Options.Gate's answer: nil while this bridge may write to
// connectors.
func (c *serverConn) gate() error {
	if gate := c.srv.opts.Gate; gate != nil {
		return gate()
	}
	return nil
}

func (c *serverConn) write(b []byte) error {
	if err := c.gate(); err != nil {
		return err
	}
	_ = c.ws.SetWriteDeadline(connws.Deadline(connws.WriteWait))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func ackFrame(seq int64) []byte {
	b, _ := connws.EncodeFrame(connector.Frame{Type: connector.TypeAck, Seq: seq}, nil)
	return b
}
