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
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/keyedmutex"
	"github.com/dmbridge/dmbridge/matrix"
	"github.com/dmbridge/dmbridge/netguard"
)

// maxAvatarBytes bounds a contact picture the bridge will fetch.
const maxAvatarBytes = 10 << 20

// errUnusableAvatar marks a contact picture that will never do: gone
// (404, 410), larger than maxAvatarBytes, or not a picture at all. The
// avatar id names the picture, so fetching it again gives the same answer;
// the rest of the profile stands, as for an address the bridge may not
// fetch.
var errUnusableAvatar = errors.New("unusable avatar")

// Ghosts manages one ghost user per network contact.
type Ghosts struct {
	intents matrix.Intents
	db      *database.Database
	cfg     *config.Config
	http    *http.Client
	log     zerolog.Logger
	locks   keyedmutex.Mutex[string]
	// registered, if set, hears of each ghost the bridge registers, once it
	// is stored (end-to-bridge encryption gives it a device ahead of need).
	registered func(id.UserID)
}

// NewGhosts creates the ghost manager.
func NewGhosts(intents matrix.Intents, db *database.Database, cfg *config.Config, httpClient *http.Client, log zerolog.Logger) *Ghosts {
	return &Ghosts{intents: intents, db: db, cfg: cfg, http: httpClient, log: log.With().Str("component", "ghosts").Logger()}
}

// SetIntentHook makes every ghost intent pass through hook before use (see
// matrix.Intents.SetGhostHook). It must be called before the ghosts are used.
func (g *Ghosts) SetIntentHook(hook func(*mas.IntentAPI)) { g.intents.SetGhostHook(hook) }

// SetRegisteredHook makes hook hear of every ghost registered from now on.
// It must be called before the ghosts are used, and must not block.
func (g *Ghosts) SetRegisteredHook(hook func(id.UserID)) { g.registered = hook }

// MXID is the ghost's user id for a contact.
func (g *Ghosts) MXID(contactID string) id.UserID { return g.cfg.GhostUserID(contactID) }

// Intent returns the intent of a contact's ghost, without any homeserver call.
func (g *Ghosts) Intent(contactID string) matrix.API {
	return g.intents.Ghost(g.MXID(contactID), false)
}

// Ensure registers the contact's ghost if the bridge has not done so yet and
// gives it a displayname: the contact's if known, else the contact id. Each
// step runs once per ghost, remembered in the database.
func (g *Ghosts) Ensure(ctx context.Context, contactID string) (*database.Ghost, matrix.API, error) {
	unlock := g.locks.Lock(contactID)
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

func (g *Ghosts) ensureRegistered(ctx context.Context, contactID string) (*database.Ghost, matrix.API, error) {
	ghost, err := g.db.Ghost.Get(ctx, contactID)
	if err != nil {
		return nil, nil, fmt.Errorf("load ghost %s: %w", contactID, err)
	}
	if ghost == nil {
		ghost = &database.Ghost{ID: contactID, MXID: g.MXID(contactID)}
	}
	if ghost.Registered {
		return ghost, g.intents.Ghost(ghost.MXID, true), nil
	}
	if err = g.intents.RegisterGhost(ctx, ghost.MXID); err != nil {
		return nil, nil, fmt.Errorf("register ghost: %w", err)
	}
	ghost.Registered = true
	if err = g.db.Ghost.Put(ctx, ghost); err != nil {
		return nil, nil, fmt.Errorf("store ghost %s: %w", ghost.MXID, err)
	}
	g.log.Debug().Stringer("ghost", ghost.MXID).Msg("Registered ghost")
	if g.registered != nil {
		g.registered(ghost.MXID)
	}
	return ghost, g.intents.Ghost(ghost.MXID, true), nil
}

func (g *Ghosts) setName(ctx context.Context, ghost *database.Ghost, intent matrix.API, name string) error {
	display := g.cfg.GhostDisplayname(name, ghost.ID)
	// matrix.API's SetDisplayName does not read the displayname first (as
	// mautrix's IntentAPI does to skip an unchanged one): that would be a
	// homeserver call per new ghost that buys nothing here, since the caller
	// already compared with the name stored for the ghost (and only the
	// bridge sets a ghost's profile).
	if err := intent.SetDisplayName(ctx, display); err != nil {
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
	unlock := g.locks.Lock(contact.ID)
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
			} else if errors.Is(err, errUnusableAvatar) {
				zerolog.Ctx(ctx).Warn().Err(err).Msg("Skipping the contact's avatar")
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

func (g *Ghosts) uploadAvatar(ctx context.Context, intent matrix.API, avatar *connector.Avatar) (id.ContentURI, error) {
	if avatar.URL == "" {
		return id.ContentURI{}, fmt.Errorf("avatar %s has no url", avatar.ID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, avatar.URL, nil)
	if err != nil {
		// A URL that does not parse will not parse on a retry either.
		return id.ContentURI{}, fmt.Errorf("%w: %s has an unusable url: %w", errUnusableAvatar, avatar.ID, err)
	}
	if err := netguard.CheckScheme(req.URL.Scheme); err != nil {
		// Only http and https are fetched (the protocol document); a
		// retry would be refused the same way.
		return id.ContentURI{}, fmt.Errorf("%w: %s: %w", errUnusableAvatar, avatar.ID, err)
	}
	resp, err := g.http.Do(req)
	if err != nil {
		return id.ContentURI{}, fmt.Errorf("fetch avatar %s: %w", avatar.ID, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusGone:
		// Final, as for attachments: retrying held the contact's messages
		// back for the whole backoff, then parked the event anyway.
		return id.ContentURI{}, fmt.Errorf("%w: %s is gone (HTTP %d)", errUnusableAvatar, avatar.ID, resp.StatusCode)
	default:
		return id.ContentURI{}, fmt.Errorf("fetch avatar %s: HTTP %d", avatar.ID, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAvatarBytes+1))
	if err != nil {
		return id.ContentURI{}, fmt.Errorf("read avatar %s: %w", avatar.ID, err)
	} else if len(data) > maxAvatarBytes {
		return id.ContentURI{}, fmt.Errorf("%w: %s is larger than %d bytes", errUnusableAvatar, avatar.ID, maxAvatarBytes)
	}
	mime := connector.PictureType(data, avatar.MimeType)
	if mime == "" {
		return id.ContentURI{}, fmt.Errorf("%w: %s is not a picture (%s)", errUnusableAvatar, avatar.ID, http.DetectContentType(data))
	}
	up, err := intent.UploadBytes(ctx, data, mime)
	if err != nil {
		return id.ContentURI{}, fmt.Errorf("upload avatar %s: %w", avatar.ID, err)
	}
	return up.ContentURI, nil
}
