// Package puppet manages the Matrix users the bridge acts as: ghosts for the
// network's contacts, double puppets for the real users, their profiles,
// presence and the users' m.direct account data.
package puppet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/netguard"
)

// maxAvatarBytes bounds a contact picture the bridge will fetch.
const maxAvatarBytes = 10 << 20

// Ghosts manages one ghost user per network contact.
type Ghosts struct {
	as    *mas.AppService
	db    *database.Database
	cfg   *config.Config
	http  *http.Client
	log   zerolog.Logger
	locks keyedLocks
	// onIntent, if set, sees every ghost intent before it is used (end-to-
	// bridge encryption attaches the ghost's device to it).
	onIntent func(*mas.IntentAPI)
}

// SetIntentHook sets a function that sees every ghost intent before use.
// It must be called before the ghosts are used.
func (g *Ghosts) SetIntentHook(hook func(*mas.IntentAPI)) { g.onIntent = hook }

func (g *Ghosts) intent(userID id.UserID) *mas.IntentAPI {
	intent := g.as.Intent(userID)
	if intent != nil && g.onIntent != nil {
		g.onIntent(intent)
	}
	return intent
}

// NewGhosts creates the ghost manager.
func NewGhosts(as *mas.AppService, db *database.Database, cfg *config.Config, httpClient *http.Client, log zerolog.Logger) *Ghosts {
	return &Ghosts{as: as, db: db, cfg: cfg, http: httpClient, log: log.With().Str("component", "ghosts").Logger()}
}

// MXID is the ghost's user id for a contact.
func (g *Ghosts) MXID(contactID string) id.UserID { return g.cfg.GhostUserID(contactID) }

// Intent returns the intent of a contact's ghost, without any homeserver call.
func (g *Ghosts) Intent(contactID string) *mas.IntentAPI {
	return g.intent(g.MXID(contactID))
}

// Ensure registers the contact's ghost if the bridge has not done so yet and
// gives it a displayname: the contact's if known, else the contact id. Each
// step runs once per ghost, remembered in the database.
func (g *Ghosts) Ensure(ctx context.Context, contactID string) (*database.Ghost, *mas.IntentAPI, error) {
	unlock := g.locks.lock(contactID)
	defer unlock()
	ghost, intent, err := g.ensureRegistered(ctx, contactID)
	if err != nil {
		return nil, nil, err
	}
	if !ghost.NameSet {
		if err = g.setName(ctx, ghost, intent, ghost.Name); err != nil {
			return nil, nil, err
		}
	}
	return ghost, intent, nil
}

func (g *Ghosts) ensureRegistered(ctx context.Context, contactID string) (*database.Ghost, *mas.IntentAPI, error) {
	ghost, err := g.db.Ghost.Get(ctx, contactID)
	if err != nil {
		return nil, nil, fmt.Errorf("load ghost %s: %w", contactID, err)
	}
	if ghost == nil {
		ghost = &database.Ghost{ID: contactID, MXID: g.MXID(contactID)}
	}
	intent := g.intent(ghost.MXID)
	if intent == nil {
		return nil, nil, fmt.Errorf("no intent for ghost %s", ghost.MXID)
	}
	if ghost.Registered {
		intent.Registered = true
		return ghost, intent, nil
	}
	if err = intent.Register(ctx); err != nil && !errors.Is(err, mautrix.MUserInUse) {
		return nil, nil, fmt.Errorf("register ghost %s: %w", ghost.MXID, err)
	}
	intent.Registered = true
	ghost.Registered = true
	if err = g.db.Ghost.Put(ctx, ghost); err != nil {
		return nil, nil, fmt.Errorf("store ghost %s: %w", ghost.MXID, err)
	}
	if err = g.as.StateStore.MarkRegistered(ctx, ghost.MXID); err != nil {
		return nil, nil, fmt.Errorf("mark ghost %s registered: %w", ghost.MXID, err)
	}
	g.log.Debug().Stringer("ghost", ghost.MXID).Msg("Registered ghost")
	return ghost, intent, nil
}

func (g *Ghosts) setName(ctx context.Context, ghost *database.Ghost, intent *mas.IntentAPI, name string) error {
	display := g.cfg.GhostDisplayname(name, ghost.ID)
	// Not intent.SetDisplayName: it reads the displayname first to skip an
	// unchanged one, a homeserver call per new ghost that buys nothing here,
	// since the caller already compared with the name stored for the ghost
	// (and only the bridge sets a ghost's profile).
	if err := intent.Client.SetDisplayName(ctx, display); err != nil {
		return fmt.Errorf("set displayname of %s: %w", ghost.MXID, err)
	}
	ghost.Name = name
	ghost.NameSet = true
	return g.db.Ghost.Put(ctx, ghost)
}

// UpdateProfile applies a contact's profile to its ghost. It calls the
// homeserver only for what changed; the avatar is fetched and uploaded only
// when its id changes. It reports whether anything changed.
func (g *Ghosts) UpdateProfile(ctx context.Context, contact *connector.Contact) (bool, error) {
	unlock := g.locks.lock(contact.ID)
	defer unlock()
	ghost, intent, err := g.ensureRegistered(ctx, contact.ID)
	if err != nil {
		return false, err
	}
	changed := false
	if contact.Name != "" && (!ghost.NameSet || ghost.Name != contact.Name) {
		if err = g.setName(ctx, ghost, intent, contact.Name); err != nil {
			return false, err
		}
		changed = true
	} else if !ghost.NameSet {
		if err = g.setName(ctx, ghost, intent, ghost.Name); err != nil {
			return false, err
		}
	}
	avatarID := ""
	if contact.Avatar != nil {
		avatarID = contact.Avatar.ID
	}
	if avatarID != ghost.AvatarID || (avatarID != "" && !ghost.AvatarSet) {
		mxc := id.ContentURIString("")
		if contact.Avatar != nil && contact.Avatar.ID != "" {
			uri, err := g.uploadAvatar(ctx, intent, contact.Avatar)
			if netguard.IsRefused(err) {
				// No retry changes that answer; the rest of the profile
				// stands and the ghost keeps its old picture.
				zerolog.Ctx(ctx).Warn().Str("avatar_id", contact.Avatar.ID).Str("refused", netguard.Detail(err)).
					Msg("Avatar URL points to an address the bridge may not fetch, skipping the avatar")
				return changed, nil
			} else if err != nil {
				return changed, err
			}
			mxc = uri.CUString()
		}
		parsed, _ := mxc.Parse()
		if err = intent.SetAvatarURL(ctx, parsed); err != nil {
			return changed, fmt.Errorf("set avatar of %s: %w", ghost.MXID, err)
		}
		ghost.AvatarID, ghost.AvatarMXC, ghost.AvatarSet = avatarID, mxc, true
		if err = g.db.Ghost.Put(ctx, ghost); err != nil {
			return changed, err
		}
		changed = true
	}
	return changed, nil
}

func (g *Ghosts) uploadAvatar(ctx context.Context, intent *mas.IntentAPI, avatar *connector.Avatar) (id.ContentURI, error) {
	if avatar.URL == "" {
		return id.ContentURI{}, fmt.Errorf("avatar %s has no url", avatar.ID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, avatar.URL, nil)
	if err != nil {
		return id.ContentURI{}, fmt.Errorf("fetch avatar %s: %w", avatar.ID, err)
	}
	resp, err := g.http.Do(req)
	if err != nil {
		return id.ContentURI{}, fmt.Errorf("fetch avatar %s: %w", avatar.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return id.ContentURI{}, fmt.Errorf("fetch avatar %s: HTTP %d", avatar.ID, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAvatarBytes+1))
	if err != nil {
		return id.ContentURI{}, fmt.Errorf("read avatar %s: %w", avatar.ID, err)
	} else if len(data) > maxAvatarBytes {
		return id.ContentURI{}, fmt.Errorf("avatar %s is larger than %d bytes", avatar.ID, maxAvatarBytes)
	}
	mime := avatar.MimeType
	if mime == "" {
		mime = http.DetectContentType(data)
	}
	up, err := intent.UploadBytes(ctx, data, mime)
	if err != nil {
		return id.ContentURI{}, fmt.Errorf("upload avatar %s: %w", avatar.ID, err)
	}
	return up.ContentURI, nil
}
