package xmppconnector

import (
	"context"
	"errors"
	"fmt"
	"time"
)

const catchUpPage = 100

// cursorArchiveStart is the cursor of an account whose archive was empty
// at its first start: everything the archive gets later arrived after that
// start, so the next catch-up pages from the archive's beginning. Without
// it the cursor stayed "", and the next start took whatever had arrived
// meanwhile for history before the first start and skipped it. Archive ids
// are the server's (UUIDs and the like); this one cannot be among them.
const cursorArchiveStart = "dmbridge:archive-start"

// catchUp pages the archive forward from the stored cursor, so that what
// arrived while the connector was away, or reached the archive without
// reaching this client (see archive_sweep), gets to the bridge. Items
// already bridged live are skipped by their archive id, so overlap is
// harmless. Only catchUp moves the cursor.
func (a *account) catchUp(ctx context.Context, conn *xmppConn) error {
	cursor, err := a.store.Cursor(ctx, a.login)
	if err != nil {
		return fmt.Errorf("reading archive cursor: %w", err)
	}
	if cursor == "" {
		// First start: history before it is the bridge's to backfill, not
		// ours to replay; remember where the archive ends.
		end := ""
		page, err := conn.queryArchive(ctx, archiveQuery{before: &end, max: 1})
		if err != nil {
			return err
		}
		if n := len(page.items); n > 0 {
			a.log.Info().Str("cursor", page.items[n-1].id).Msg("First start: archive cursor set to the newest message")
			if err := a.store.SetCursor(ctx, a.login, page.items[n-1].id); err != nil || !page.cut {
				return err
			}
			conn.skippedOversized.Store(true)
			return &errArchiveCut{id: page.last}
		}
		a.log.Info().Msg("First start on an empty archive: catching up from its beginning from now on")
		return a.store.SetCursor(ctx, a.login, cursorArchiveStart)
	}
	began, total := time.Now(), 0
	after := cursor
	if cursor == cursorArchiveStart {
		// No after: the first page of the archive.
		after = ""
	}
	for {
		page, err := conn.queryArchive(ctx, archiveQuery{after: after, max: catchUpPage})
		var iqErr *iqError
		if errors.As(err, &iqErr) && iqErr.Condition == "item-not-found" && after == cursor {
			// The cursor fell out of the archive (expired or wiped). The
			// newest page is the best that is left; seen ids keep it from
			// repeating what was bridged.
			a.log.Warn().Str("cursor", cursor).Msg("Archive no longer has the cursor; catching up on the newest messages only")
			end := ""
			page, err = conn.queryArchive(ctx, archiveQuery{before: &end, max: catchUpPage})
			if err == nil {
				page.complete = true
			}
		}
		if err != nil {
			return fmt.Errorf("catching up after %s: %w", after, err)
		}
		for i := range page.items {
			if err := a.handleArchived(ctx, conn, &page.items[i]); err != nil {
				return err
			}
		}
		total += len(page.items)
		if page.last != "" {
			// Items seen live leave the cursor where it was; past the whole
			// page, the next catch-up need not page over them again.
			if err := a.store.SetCursor(ctx, a.login, page.last); err != nil {
				return fmt.Errorf("moving archive cursor: %w", err)
			}
		}
		if page.cut {
			// The connection ended at an oversized item, bridged as a
			// stand-in: the next connection's catch-up goes on after it.
			conn.skippedOversized.Store(true)
			return &errArchiveCut{id: page.last}
		}
		if page.complete || len(page.items) == 0 || page.last == "" {
			break
		}
		after = page.last
	}
	a.log.Info().Int("items", total).Dur("took", time.Since(began)).Msg("Archive catch-up done")
	return nil
}

// handleArchived bridges one archive item. Its direction is in the
// addresses: our own bare JID as sender means one of our clients sent it.
func (a *account) handleArchived(ctx context.Context, conn *xmppConn, item *mamItem) error {
	m := item.msg
	ts, ok := item.delay.time()
	if !ok {
		ts = time.Now()
	}
	in := inbound{
		m:         m,
		archiveID: item.id,
		outgoing:  bareOf(m.From) == a.login,
		ts:        ts,
		archived:  true,
	}
	if m.Type == "groupchat" || m.Type == "error" || m.MUCUser != nil {
		return a.store.MarkArchived(ctx, a.login, item.id)
	}
	return a.bridge(ctx, conn, in)
}
