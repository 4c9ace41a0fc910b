package puppet

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/keyedmutex"
	"github.com/dmbridge/dmbridge/internal/lru"
	"github.com/dmbridge/dmbridge/matrix"
)

const asTokenPrefix = "as_token:"

// DoublePuppets hands out intents that act as real Matrix users, through the
// "as_token:" method: a second appservice registration whose namespace covers
// the users, used with user_id masquerading.
type DoublePuppets struct {
	mx      matrix.Intents
	db      *database.Database
	secrets map[string]string
	log     zerolog.Logger

	mu sync.Mutex
	// intents keeps the most recently used users' intents; verified
	// remembers every user whose secret whoami confirmed, so that an
	// intent dropped from intents is rebuilt without a homeserver call.
	intents  *lru.LRU[id.UserID, matrix.API]
	verified map[id.UserID]bool
	warned   map[string]bool
	locks    keyedmutex.Mutex[string]
	// profiles caches each user's global profile for their joins. A later
	// change of it is the homeserver's business (it updates the user's
	// member events), so one read per user and process is enough.
	profiles map[id.UserID]map[string]any
	// onVerified, if set, hears of each user whose double puppet this
	// process verified (dpsync follows them).
	onVerified func(id.UserID)
}

// SetVerifiedHook names who hears of each user whose double puppet this
// process verifies, once per user. Call it before the portals start.
func (d *DoublePuppets) SetVerifiedHook(hook func(id.UserID)) { d.onVerified = hook }

// NewDoublePuppets creates the double puppet manager.
func NewDoublePuppets(mx matrix.Intents, db *database.Database, cfg *config.Config, log zerolog.Logger) *DoublePuppets {
	return &DoublePuppets{
		mx: mx, db: db, secrets: cfg.DoublePuppet.Secrets,
		log:      log.With().Str("component", "double_puppet").Logger(),
		intents:  lru.New[id.UserID, matrix.API](maxDoublePuppetIntents),
		verified: make(map[id.UserID]bool),
		warned:   make(map[string]bool),
		profiles: make(map[id.UserID]map[string]any),
	}
}

// maxDoublePuppetIntents bounds the double puppet intents kept for reuse
// (a client and logger each, ~1.3 KB); with 10,000 users the m.direct
// repair alone would otherwise keep one per user for good.
const maxDoublePuppetIntents = 1024

// Intent returns an intent acting as the user, or nil when no secret covers
// the user's server; the bridge then falls back to a plain invite. The first
// call per user and process verifies the secret with whoami.
func (d *DoublePuppets) Intent(ctx context.Context, userID id.UserID) (matrix.API, error) {
	d.mu.Lock()
	intent, ok := d.intents.Get(userID)
	d.mu.Unlock()
	if ok {
		return intent, nil
	}
	unlock := d.locks.Lock(string(userID))
	defer unlock()
	d.mu.Lock()
	intent, ok = d.intents.Get(userID)
	verified := d.verified[userID]
	d.mu.Unlock()
	if ok {
		return intent, nil
	}
	_, server, err := userID.Parse()
	if err != nil {
		return nil, fmt.Errorf("parse user id %q: %w", userID, err)
	}
	secret, hasSecret := d.secrets[server]
	if !hasSecret || !strings.HasPrefix(secret, asTokenPrefix) {
		d.warnOnce(server)
		return nil, nil
	}
	intent, err = d.mx.DoublePuppet(userID, strings.TrimPrefix(secret, asTokenPrefix))
	if err != nil {
		return nil, err
	}
	if verified {
		d.mu.Lock()
		intent = d.intents.Add(userID, intent)
		d.mu.Unlock()
		return intent, nil
	}
	resp, err := intent.Whoami(ctx)
	if err != nil {
		_ = d.db.User.SetDoublePuppet(ctx, userID, false)
		return nil, fmt.Errorf("verify double puppet for %s: %w", userID, err)
	} else if resp.UserID != userID {
		return nil, fmt.Errorf("verify double puppet for %s: whoami answered %s", userID, resp.UserID)
	}
	if err = d.db.User.SetDoublePuppet(ctx, userID, true); err != nil {
		return nil, fmt.Errorf("store double puppet state of %s: %w", userID, err)
	}
	d.mu.Lock()
	intent = d.intents.Add(userID, intent)
	d.verified[userID] = true
	d.mu.Unlock()
	d.log.Info().Stringer("user_id", userID).Msg("Double puppeting enabled")
	if d.onVerified != nil {
		d.onVerified(userID)
	}
	return intent, nil
}

// Join joins the double puppet to a room with the user's displayname and
// avatar in its member event. A double puppet joins by writing the member
// event itself, and the homeserver copies no profile into a member event it
// is handed, so without this the user's join shows their bare Matrix ID.
func (d *DoublePuppets) Join(ctx context.Context, intent matrix.API, roomID id.RoomID) error {
	_, err := intent.JoinRoomByID(ctx, roomID, d.profile(ctx, intent))
	return err
}

// profile is the user's global profile as member event content, read once
// per user. Without one (the read failed) the join goes ahead without it and
// the next join reads it again. Each join gets its own copy: mautrix adds
// the double-puppet mark to the content map it is given, and joins of the
// same user into different portals run at once.
func (d *DoublePuppets) profile(ctx context.Context, intent matrix.API) map[string]any {
	d.mu.Lock()
	content, ok := d.profiles[intent.UserID()]
	d.mu.Unlock()
	if ok {
		return maps.Clone(content)
	}
	resp, err := intent.GetProfile(ctx, intent.UserID())
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Stringer("user_id", intent.UserID()).
			Msg("Failed to read the user's profile, joining without displayname and avatar")
		return map[string]any{}
	}
	content = map[string]any{}
	if resp.DisplayName != "" {
		content["displayname"] = resp.DisplayName
	}
	if !resp.AvatarURL.IsEmpty() {
		content["avatar_url"] = resp.AvatarURL.String()
	}
	d.mu.Lock()
	d.profiles[intent.UserID()] = content
	d.mu.Unlock()
	return maps.Clone(content)
}

func (d *DoublePuppets) warnOnce(server string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.warned[server] {
		return
	}
	d.warned[server] = true
	d.log.Warn().Str("server", server).
		Msg("No double_puppet secret (as_token:...) for this server: users will get plain invites and their own messages from other devices are sent by the ghost")
}
