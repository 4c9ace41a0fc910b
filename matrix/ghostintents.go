package matrix

import (
	"reflect"
	"sync"

	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/lru"
)

// maxGhostIntents bounds the ghost intents kept for reuse. An intent is a
// client with its own logger, ~1.3 KB; building one is a few allocations, so
// a miss costs microseconds and no homeserver call.
const maxGhostIntents = 4096

// ghostIntents hands out ghosts' intents, keeping the most recently used.
//
// mautrix's AppService.Intent keeps every intent (and AppService.Client
// every client) it ever made in maps that nothing empties: with 100,000
// ghosts that is over 100 MB that never goes away. The intents built here
// bypass both maps. IntentAPI's link to the appservice and to the bot's
// client is unexported and set only by AppService.NewIntentAPI, so each
// intent starts as a copy of one template made by it (made once, for a
// localpart no ghost has, and never used to act), with the client and user
// swapped for the ghost's, as mautrix itself does for double puppets.
type ghostIntents struct {
	as       *mas.AppService
	template *mas.IntentAPI
	max      int

	mu     sync.Mutex
	recent *lru.LRU[id.UserID, *mas.IntentAPI]
	// hook, if set, sees each intent as it is built (encryption gives the
	// ghost's client its device).
	hook func(*mas.IntentAPI)
}

func (g *ghostIntents) setHook(hook func(*mas.IntentAPI)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hook = hook
	g.recent = lru.New[id.UserID, *mas.IntentAPI](g.max)
}

func newGhostIntents(as *mas.AppService, max int) *ghostIntents {
	return &ghostIntents{
		as:       as,
		template: as.NewIntentAPI("_dmbridge_intent_template"),
		recent:   lru.New[id.UserID, *mas.IntentAPI](max),
		max:      max,
	}
}

// get returns the user's intent, or nil for a user id that is not on the
// appservice's homeserver (as AppService.Intent does). The bot's intent is
// mautrix's own.
func (g *ghostIntents) get(userID id.UserID) *mas.IntentAPI {
	if userID == g.as.BotMXID() {
		return g.as.BotIntent()
	}
	g.mu.Lock()
	intent, ok := g.recent.Get(userID)
	g.mu.Unlock()
	if ok {
		return intent
	}
	if intent = g.build(userID); intent == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.hook != nil {
		g.hook(intent)
	}
	// Built meanwhile by another caller: everyone uses that one.
	return g.recent.Add(userID, intent)
}

func (g *ghostIntents) build(userID id.UserID) *mas.IntentAPI {
	localpart, server, err := userID.Parse()
	if err != nil || localpart == "" || server != g.as.HomeserverDomain {
		return nil
	}
	intent := &mas.IntentAPI{}
	// A copy through reflect rather than *intent = *g.template: IntentAPI
	// holds a mutex, which the template never locks, so the copy is a
	// fresh one; the assignment would only draw vet's copylocks warning.
	reflect.ValueOf(intent).Elem().Set(reflect.ValueOf(g.template).Elem())
	intent.Client = g.as.NewMautrixClient(userID)
	intent.Localpart = localpart
	intent.UserID = userID
	intent.IsCustomPuppet = false
	intent.Registered = false
	return intent
}
