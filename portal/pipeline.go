package portal

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/inbox"
)

// A busy chat's pipeline: when a plain message's next message is queued
// and its marker is written ahead (premark.go), the message's job hands its
// result to the group committer and ends without waiting for the commit.
// The next message's send waits only for the commit that wrote its own
// marker, so a chat's sends no longer wait one commit each, and more
// results share a commit.
//
// What the lane must still see committed is waited for before it matters:
// the lane settles the pipeline (finish) before any job that is not the
// next premarked message (a reply, an edit, a contact's profile, anything
// that may read what the results store) and before it runs dry or stops.
// The chat's lock is kept until then too, so an invite, a start-chat or a
// cleanup never sees a result half stored. A result whose commit failed
// has its event applied again there: its marker is still stored, so the
// send is resolved against the room (indoubt.go) and mapped, never sent a
// second time; a premark that no send took is deleted.
type pipeline struct {
	m *Manager
	// chat and unlock: the chat lock the pipeline holds, from the first
	// message that left its result behind until finish.
	chat   database.PortalKey
	unlock func()
	// results are the commits not waited for, in the lane's order.
	results []*pendingResult
	// marks are the premarks of the next queued events, in the lane's
	// order.
	marks []*premark
	// finishing: settling; what runs now neither overlaps nor premarks.
	finishing bool
}

type pendingResult struct {
	write *groupWrite
	entry *inbox.Entry
}

// pipelineOf returns the pipeline of ctx's lane, or nil.
func pipelineOf(ctx context.Context) *pipeline {
	here := laneOf(ctx)
	if here == nil {
		return nil
	}
	pl, _ := here.behind.(*pipeline)
	return pl
}

// pipelineFor returns the pipeline of ctx's lane, starting one if the lane
// has nothing behind it; nil outside a lane or while it settles.
func (m *Manager) pipelineFor(ctx context.Context) *pipeline {
	here := laneOf(ctx)
	if here == nil {
		return nil
	}
	if here.behind == nil {
		here.behind = &pipeline{m: m}
	}
	pl, _ := here.behind.(*pipeline)
	if pl == nil || pl.finishing {
		return nil
	}
	return pl
}

// maxBehind bounds the results a pipeline leaves behind before it settles,
// and with them how long it keeps the chat's lock from an invite or a
// cleanup waiting for it.
const maxBehind = 32

// lets lets the next job start while results are behind only when it is
// the event whose marker comes next.
func (pl *pipeline) lets(peek any) bool {
	e, ok := peek.(*inbox.Entry)
	return ok && !pl.finishing && len(pl.results) < maxBehind && len(pl.marks) > 0 && pl.marks[0].entry == e
}

// leaveBehind keeps a result's write for finish, with the chat's lock,
// which ctx's hold (holdChat) passes on. It reports false when there is no
// hold to take, and the caller must wait for the write itself.
func (pl *pipeline) leaveBehind(ctx context.Context, w *groupWrite, e *inbox.Entry) bool {
	hold, _ := ctx.Value(chatHoldKey{}).(*chatHold)
	switch {
	case hold == nil:
		return false
	case hold.kept:
		// The pipeline has it already.
	case pl.unlock != nil:
		// Another chat's lock: a lane serves one chat.
		return false
	default:
		hold.kept = true
		pl.chat, pl.unlock = hold.key, hold.unlock
	}
	pl.results = append(pl.results, &pendingResult{write: w, entry: e})
	return true
}

// finish waits for the results left behind and applies again those whose
// commit failed, then releases the chat's lock. The premarks go with it,
// deleted, unless the lane settles only because maxBehind results are
// behind and next is the message of the first premark: then they stay
// behind for it, in a pipeline of their own, and the chat's next messages
// do not each write their marker alone, before their sends, after every
// maxBehind messages of a busy chat. A premark that waits while the lock
// is free is a marker written earlier than its send, as every premark is;
// the send that takes it checks its room again (sameSend).
func (pl *pipeline) finish(ctx context.Context, next any) behind {
	pl.finishing = true
	defer func() {
		if pl.unlock != nil {
			pl.unlock()
			pl.unlock = nil
		}
	}()
	results := pl.results
	pl.results = nil
	failed := false
	for _, r := range results {
		if !r.write.wait(ctx) {
			// Stopping: the event is still stored, and runs again
			// after a restart.
			return nil
		}
		if r.write.err != nil {
			failed = true
			zerolog.Ctx(ctx).Warn().Err(r.write.err).Str("connector_id", r.entry.ConnectorID).Int64("seq", r.entry.Seq).
				Msg("Storing a sent message's result failed, applying it again")
			pl.m.applyInbox(ctx, r.entry)
		}
	}
	marks := pl.marks
	pl.marks = nil
	if !failed && next != nil && len(marks) > 0 && next == any(marks[0].entry) {
		return &pipeline{m: pl.m, marks: marks}
	}
	pl.m.dropPremarks(ctx, marks)
	return nil
}

// chatHold is applyRemote's hold on its chat's lock, which a pipeline may
// take over (kept) to release it only when its results are stored.
type chatHold struct {
	key    database.PortalKey
	unlock func()
	kept   bool
}

type chatHoldKey struct{}

// holdChat locks key's chat for applyRemote, unless the lane's pipeline
// holds that lock already; release gives it back unless a pipeline kept it.
func (m *Manager) holdChat(ctx context.Context, key database.PortalKey) (context.Context, *chatHold) {
	if pl := pipelineOf(ctx); pl != nil && pl.unlock != nil && pl.chat == key {
		return context.WithValue(ctx, chatHoldKey{}, &chatHold{key: key, kept: true}), nil
	}
	hold := &chatHold{key: key, unlock: m.chats.Lock(key)}
	return context.WithValue(ctx, chatHoldKey{}, hold), hold
}

func (h *chatHold) release() {
	if h != nil && !h.kept {
		h.unlock()
	}
}
