package xmppconnector

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/dmbridge/dmbridge/connector"
)

// fetchContact reads who's vCard (XEP-0054) and turns it into a contact.
// Servers answer for accounts without a vCard with an error, which just
// means a contact with no profile.
func (a *account) fetchContact(ctx context.Context, conn *xmppConn, who string) (*connector.Contact, error) {
	c := &connector.Contact{ID: who}
	if j, err := jid.Parse(who); err == nil {
		c.Name = j.Localpart()
	}
	rctx, cancel := context.WithTimeout(ctx, profileTimeout)
	defer cancel()
	vc, err := conn.fetchVCard(rctx, who)
	var iqErr *iqError
	if errors.As(err, &iqErr) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetching vCard of %s: %w", who, err)
	}
	if name := strings.TrimSpace(vc.FN); name != "" {
		c.Name = name
	} else if nick := strings.TrimSpace(vc.Nickname); nick != "" {
		c.Name = nick
	}
	if vc.Photo.TooLarge {
		a.log.Debug().Str("contact", who).Msg("Ignoring a vCard photo over the avatar limit")
		return c, nil
	}
	if len(vc.Photo.BinVal) > 0 && a.avatarBase != "" {
		data, err := photoBytes(vc.Photo.BinVal)
		if errors.Is(err, errPhotoTooLarge) {
			// Within the base64 bound, over it once decoded.
			a.log.Debug().Str("contact", who).Msg("Ignoring a vCard photo over the avatar limit")
			return c, nil
		} else if err != nil {
			a.log.Debug().Err(err).Str("contact", who).Msg("Ignoring an undecodable vCard photo")
			return c, nil
		}
		// The contact chooses both the bytes and the TYPE; the avatar
		// endpoint serves them on, so only a picture is kept.
		mt := connector.PictureType(data, vc.Photo.Type)
		if mt == "" {
			a.log.Debug().Str("contact", who).Str("type", vc.Photo.Type).Msg("Ignoring a vCard photo that is not a picture")
			return c, nil
		}
		sum := sha1.Sum(data)
		id := hex.EncodeToString(sum[:])
		if err := a.store.PutAvatar(ctx, id, mt, data); err != nil {
			return nil, err
		}
		c.Avatar = &connector.Avatar{ID: id, URL: a.avatarBase + avatarPath + id, MimeType: mt}
	}
	return c, nil
}

// ensureContact has a contact introduced to the bridge the first time it
// shows up: its profile is fetched in the background (fetchProfiles), and
// the contact's first message waits for it up to a.firstProfileWait.
func (a *account) ensureContact(ctx context.Context, who string) error {
	_, known, err := a.store.Contact(ctx, a.login, who)
	if err != nil || known {
		return err
	}
	a.requestProfile(who, false)
	if ready := a.profiles.firstFetch(who); ready != nil {
		t := time.NewTimer(a.firstProfileWait)
		defer t.Stop()
		select {
		case <-ready:
		case <-t.C:
			a.log.Debug().Str("contact", who).Msg("Contact profile is slow; bridging the message without it")
		case <-ctx.Done():
		}
	}
	return nil
}

// requestProfile queues a profile fetch (see profileFetches).
func (a *account) requestProfile(who string, refresh bool) {
	if !a.profiles.request(who, refresh, time.Now()) {
		a.log.Debug().Str("contact", who).Bool("refresh", refresh).Msg("Not fetching a contact profile now")
	}
}

// refreshContact re-reads a profile and tells the bridge if it changed.
// It runs on the profile fetcher, never on the worker.
func (a *account) refreshContact(ctx context.Context, conn *xmppConn, who string) error {
	c, err := a.fetchContact(ctx, conn, who)
	if err != nil {
		return err
	}
	now := storedContact{Name: c.Name}
	if c.Avatar != nil {
		now.AvatarID = c.Avatar.ID
	}
	before, known, err := a.store.Contact(ctx, a.login, who)
	if err != nil {
		return err
	}
	if known && before == now {
		return nil
	}
	ev := &connector.Event{Kind: connector.KindContact, Login: a.login, TS: time.Now().UnixMilli(), Contact: c}
	if err := a.emit(ctx, ev, nil); err != nil {
		return err
	}
	return a.store.PutContact(ctx, a.login, who, now)
}

// handlePresence maps contacts' presence, answers subscription requests,
// and notices avatar changes announced in presence (XEP-0153).
func (a *account) handlePresence(ctx context.Context, conn *xmppConn, p *presence) error {
	from, err := jid.Parse(p.From)
	if err != nil || p.MUCUser != nil {
		return nil
	}
	who := from.Bare().String()
	if who == a.login || from.Localpart() == "" {
		return nil
	}
	switch p.Type {
	case "subscribe":
		// Accepting lets the requester see when the user is online, so it
		// is done for roster contacts only (people the user added, from
		// any client or by starting a chat from Matrix); without mutual
		// subscription neither presence nor profile updates flow, so the
		// connector asks back. A stranger's request stays pending on the
		// server, where the user can answer it from another XMPP client.
		ok, err := a.inRoster(ctx, conn, who)
		if err != nil {
			return err
		}
		if !ok {
			a.log.Info().Str("contact", who).Msg("Leaving a presence subscription request from someone not in the roster unanswered")
			return nil
		}
		a.log.Info().Str("contact", who).Msg("Accepting presence subscription from a roster contact")
		if err := conn.send(ctx, presenceOut{To: who, Type: "subscribed"}); err != nil {
			return err
		}
		return conn.send(ctx, presenceOut{To: who, Type: "subscribe"})
	case "", "unavailable":
	default:
		return nil
	}
	state := connector.PresenceOffline
	if p.Type == "" {
		switch p.Show {
		case "away", "xa":
			state = connector.PresenceUnavailable
		default:
			state = connector.PresenceOnline
		}
	}
	if agg, changed := a.notePresence(who, from.Resourcepart(), state); changed {
		// The SDK refuses a presence whose status is over the protocol's
		// bound, and the contact's coming online was lost with it: the
		// status is cut instead, at a character boundary.
		e := &connector.Ephemeral{Kind: connector.KindPresence, Login: a.login, Contact: who, Presence: agg,
			StatusMsg: connector.CutBytes(p.Status, connector.MaxStatusMsgBytes)}
		if err := a.events.SendEphemeral(ctx, e); err != nil {
			a.log.Debug().Err(err).Msg("Could not send presence")
		}
	}
	if p.Update != nil && p.Update.Photo != nil && a.avatarBase != "" {
		stored, known, err := a.store.Contact(ctx, a.login, who)
		if err != nil {
			return err
		}
		if !known || stored.AvatarID != *p.Update.Photo {
			a.requestProfile(who, true)
		}
	}
	return nil
}

// Bounds of the presence map, which any sender of presence can grow.
const (
	maxPresenceContacts  = 4096
	maxPresenceResources = 16
)

// notePresence records one resource's presence and returns the contact's
// overall presence (its most available resource) and whether it changed.
func (a *account) notePresence(who, resource, state string) (string, bool) {
	rank := map[string]int{connector.PresenceOffline: 0, connector.PresenceUnavailable: 1, connector.PresenceOnline: 2}
	a.mu.Lock()
	defer a.mu.Unlock()
	res := a.presence[who]
	before := connector.PresenceOffline
	for _, s := range res {
		if rank[s] > rank[before] {
			before = s
		}
	}
	if state != connector.PresenceOffline && (res == nil && len(a.presence) >= maxPresenceContacts ||
		res[resource] == "" && len(res) >= maxPresenceResources) {
		// Anyone may send directed presence, from any number of
		// resources: beyond these bounds a newcomer is not tracked.
		return before, false
	}
	if res == nil {
		res = make(map[string]string)
		a.presence[who] = res
	}
	if state == connector.PresenceOffline {
		delete(res, resource)
	} else {
		res[resource] = state
	}
	if len(res) == 0 {
		delete(a.presence, who)
	}
	after := connector.PresenceOffline
	for _, s := range res {
		if rank[s] > rank[after] {
			after = s
		}
	}
	return after, after != before
}
