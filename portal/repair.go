package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
	"github.com/dmbridge/dmbridge/metrics"
	"github.com/dmbridge/dmbridge/puppet"
)

const (
	// directRepairDelay is how long after start the first pass waits (at
	// most; a shorter repair interval shortens it), so that it does not
	// compete with the traffic a start brings: the backlog, the first
	// messages.
	directRepairDelay = 5 * time.Second
	// directRepairGap paces a pass: one user per gap, at most three
	// homeserver calls each (whoami once per process, the m.direct read,
	// the joined rooms of a user with portals), so 10,000 users are ~150
	// calls/s for 200 s rather than a burst of 30,000 at start.
	directRepairGap = 20 * time.Millisecond
)

// startDirectRepair re-checks m.direct shortly after start-up and then every
// bridge.m_direct_repair_interval after a pass ends (0 keeps only the first
// pass). Clients rewrite m.direct wholesale, and one that lost the bridge's
// entries makes portals show up as group rooms; the repair puts them back.
// The same pass checks that the user is in their portals (repair_joins.go).
// It runs in the background, paced (directRepairGap).
func (m *Manager) startDirectRepair() {
	interval := m.cfg.Bridge.MDirectRepairInterval.D()
	delay := directRepairDelay
	if interval > 0 && interval < delay {
		delay = interval
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(delay):
		}
		for {
			if err := m.RepairDirect(m.ctx); err != nil && m.ctx.Err() == nil {
				m.log.Err(err).Msg("Repair pass failed (m.direct or portal membership)")
			}
			if interval <= 0 {
				return
			}
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
}

// RepairDirect runs one repair pass over every user with a double puppet,
// one user per directRepairGap. One user's failure does not stop the others;
// the errors are joined.
func (m *Manager) RepairDirect(ctx context.Context) error {
	users, err := m.db.Login.DirectUsers(ctx)
	if err != nil {
		return fmt.Errorf("list users for the m.direct repair: %w", err)
	}
	var errs []error
	pace := time.NewTicker(directRepairGap)
	defer pace.Stop()
	for i, user := range users {
		if i > 0 {
			select {
			case <-ctx.Done():
			case <-pace.C:
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err = m.repairUser(ctx, user); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// repairUser repairs one user's DMs: their m.direct, then their membership
// of the portals (repair_joins.go).
func (m *Manager) repairUser(ctx context.Context, user id.UserID) error {
	dp, err := m.dps.Intent(ctx, user)
	if err != nil || dp == nil {
		return err
	}
	portals, err := m.db.Portal.ByUser(ctx, user)
	if err != nil {
		return fmt.Errorf("list portals of %s: %w", user, err)
	}
	var errs []error
	if err = m.repairUserDirect(ctx, dp, portals); err != nil {
		errs = append(errs, fmt.Errorf("repair m.direct of %s: %w", user, err))
	}
	if err = m.repairUserJoins(ctx, dp, portals); err != nil {
		errs = append(errs, fmt.Errorf("repair joins of %s: %w", user, err))
	}
	return errors.Join(errs...)
}

// repairUserDirect makes the user's m.direct list every portal under its
// ghost and drop the rooms the bridge cleaned up. Entries for other rooms are
// the user's own and are never touched.
func (m *Manager) repairUserDirect(ctx context.Context, dp matrix.API, portals []*database.Portal) error {
	user := dp.UserID()
	log := m.log.With().Str("repair", "m.direct").Stringer("user_id", user).Logger()
	var err error
	change := puppet.DirectChange{Add: make(map[id.UserID][]id.RoomID)}
	for _, p := range portals {
		if p.RoomID != "" {
			ghost := m.ghosts.MXID(p.ContactID)
			change.Add[ghost] = append(change.Add[ghost], p.RoomID)
		}
	}
	// Read the cleaned rooms after the portals, and let them win: a portal
	// whose cleanup started in between is then removed, not put back
	// (cleanupPortal records the room before it deletes the portal).
	if change.Remove, err = m.db.Cleaned.ByUser(ctx, user); err != nil {
		return err
	}
	current, err := readDirect(ctx, dp)
	if err != nil {
		return err
	}
	added, removed := directDiff(current, change)
	if len(added) == 0 && len(removed) == 0 {
		log.Debug().Msg("m.direct is in order")
		return m.markInDirect(ctx, portals, change.Remove)
	}
	if _, err = m.direct.Apply(ctx, dp, change); err != nil {
		return err
	}
	log.Info().Strs("added", added).Strs("removed", removed).Msg("Repaired m.direct")
	m.metrics.Repaired(metrics.RepairDirect)
	return m.markInDirect(ctx, portals, change.Remove)
}

// markInDirect records that the portals' rooms are in m.direct now, so that
// ensurePortal does not redo it.
func (m *Manager) markInDirect(ctx context.Context, portals []*database.Portal, removed map[id.RoomID]bool) error {
	for _, p := range portals {
		if p.RoomID != "" && !p.InDirect && !removed[p.RoomID] {
			if err := m.db.Portal.SetInDirect(ctx, p.PortalKey, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// readDirect reads m.direct for the diff that the log shows. Values that are
// not room lists are skipped here, as Apply leaves them alone.
func readDirect(ctx context.Context, client puppet.AccountData) (map[string][]id.RoomID, error) {
	raw := make(map[string]json.RawMessage)
	err := client.GetAccountData(ctx, event.AccountDataDirectChats.Type, &raw)
	if matrix.IsNotFound(err) {
		return map[string][]id.RoomID{}, nil
	} else if err != nil {
		return nil, fmt.Errorf("read m.direct: %w", err)
	}
	out := make(map[string][]id.RoomID, len(raw))
	for key, value := range raw {
		var rooms []id.RoomID
		if json.Unmarshal(value, &rooms) == nil {
			out[key] = rooms
		}
	}
	return out, nil
}

// directDiff says what the change would add ("ghost room") and remove.
func directDiff(current map[string][]id.RoomID, change puppet.DirectChange) (added, removed []string) {
	for ghost, rooms := range change.Add {
		for _, room := range rooms {
			if !change.Remove[room] && !slices.Contains(current[string(ghost)], room) {
				added = append(added, string(ghost)+" "+string(room))
			}
		}
	}
	for key, rooms := range current {
		for _, room := range rooms {
			if change.Remove[room] {
				removed = append(removed, key+" "+string(room))
			}
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}
