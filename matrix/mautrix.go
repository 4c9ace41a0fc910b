package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// NewIntents is the mautrix-backed Intents of an appservice.
func NewIntents(as *mas.AppService) Intents {
	return &asIntents{as: as, ghosts: newGhostIntents(as, maxGhostIntents)}
}

type asIntents struct {
	as *mas.AppService
	// ghosts stands in for mautrix's AppService.Intent, whose maps keep
	// every ghost's intent for good (see ghostintents.go).
	ghosts *ghostIntents
	// dpHook, if set, sees each double puppet intent as it is built.
	dpHook atomic.Pointer[func(*mas.IntentAPI)]
}

// SetGhostHook makes every ghost intent built from now on pass through
// hook; the intents built before are dropped, so none escapes it.
func (a *asIntents) SetGhostHook(hook func(*mas.IntentAPI)) { a.ghosts.setHook(hook) }

// SetDoublePuppetHook makes every double puppet intent built from now on
// pass through hook.
func (a *asIntents) SetDoublePuppetHook(hook func(*mas.IntentAPI)) { a.dpHook.Store(&hook) }

func (a *asIntents) Bot() API { return intent{a.as.BotIntent()} }

func (a *asIntents) Ghost(userID id.UserID, registered bool) API {
	ia := a.ghosts.get(userID)
	if registered {
		ia.Registered = true
	}
	return intent{ia}
}

func (a *asIntents) RegisterGhost(ctx context.Context, userID id.UserID) error {
	ia := a.ghosts.get(userID)
	if ia == nil {
		return fmt.Errorf("register %s: not a user of this homeserver", userID)
	}
	if err := ia.Register(ctx); err != nil && !errors.Is(err, mautrix.MUserInUse) {
		return fmt.Errorf("register %s: %w", userID, err)
	}
	ia.Registered = true
	if err := a.as.StateStore.MarkRegistered(ctx, userID); err != nil {
		return fmt.Errorf("mark %s registered: %w", userID, err)
	}
	return nil
}

func (a *asIntents) DoublePuppet(userID id.UserID, asToken string) (API, error) {
	client, err := a.as.NewExternalMautrixClient(userID, asToken, "")
	if err != nil {
		return nil, fmt.Errorf("double puppet client for %s: %w", userID, err)
	}
	client.SetAppServiceUserID = true
	ia := a.as.NewIntentAPI("double_puppet")
	ia.Client = client
	ia.Localpart, _, _ = userID.Parse()
	ia.UserID = userID
	ia.IsCustomPuppet = true
	if hook := a.dpHook.Load(); hook != nil && *hook != nil {
		(*hook)(ia)
	}
	return intent{ia}, nil
}

// intent is API on a mautrix IntentAPI. Each method forwards to the
// IntentAPI's (or its client's) method of the same name.
type intent struct{ ia *mas.IntentAPI }

func (i intent) UserID() id.UserID { return i.ia.UserID }

func (i intent) IsDoublePuppet() bool { return i.ia.IsCustomPuppet }

func (i intent) Register(ctx context.Context) error { return i.ia.Register(ctx) }

// SendMessageEvent encrypts, when the intent has a device (or, as a double
// puppet, borrows the portal ghost's) and the room is encrypted, what
// mautrix's client would not: reactions, which it leaves plain while users'
// clients encrypt them, and every event of a double puppet, so that the
// double-puppet marker is on the outside too (the bridge then skips its own
// echo without decrypting it) as well as inside.
func (i intent) SendMessageEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, content any, extra ...mautrix.ReqSendEvent) (*mautrix.RespSendEvent, error) {
	crypto := i.ia.Client.Crypto
	if crypto != nil && eventType != event.EventEncrypted && (eventType == event.EventReaction || i.ia.IsCustomPuppet) {
		encrypted, err := i.ia.StateStore.IsEncrypted(ctx, roomID)
		if err != nil {
			return nil, fmt.Errorf("check whether %s is encrypted: %w", roomID, err)
		}
		if encrypted {
			// The marker inside, for whoever decrypts the event; the
			// IntentAPI adds it to the encrypted content as well.
			content = i.ia.AddDoublePuppetValue(content)
			enc, err := crypto.Encrypt(ctx, roomID, eventType, content)
			if err != nil {
				return nil, fmt.Errorf("encrypt %s: %w", eventType.Type, err)
			}
			return i.send(ctx, roomID, event.EventEncrypted, enc, false, extra...)
		}
		return i.send(ctx, roomID, eventType, content, true, extra...)
	}
	return i.send(ctx, roomID, eventType, content, false, extra...)
}

// send is IntentAPI.SendMessageEvent, whose request sendPlain makes when
// it can. unencrypted: the room was just looked up and is not encrypted,
// so sendPlain need not look again.
func (i intent) send(ctx context.Context, roomID id.RoomID, eventType event.Type, content any, unencrypted bool, extra ...mautrix.ReqSendEvent) (*mautrix.RespSendEvent, error) {
	if err := i.ia.EnsureJoined(ctx, roomID); err != nil {
		return nil, err
	}
	content = i.ia.AddDoublePuppetValue(content)
	var req mautrix.ReqSendEvent
	if len(extra) > 0 {
		req = extra[0]
	}
	if resp, sent, err := sendPlain(ctx, i.ia.Client, roomID, eventType, content, req, unencrypted); sent {
		return resp, err
	}
	return i.ia.Client.SendMessageEvent(ctx, roomID, eventType, content, extra...)
}

func (i intent) Crypto() mautrix.CryptoHelper { return i.ia.Client.Crypto }

func (i intent) SendStateEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, stateKey string, content any, extra ...mautrix.ReqSendEvent) (*mautrix.RespSendEvent, error) {
	return i.ia.SendStateEvent(ctx, roomID, eventType, stateKey, content, extra...)
}

func (i intent) RedactEvent(ctx context.Context, roomID id.RoomID, eventID id.EventID, extra ...mautrix.ReqRedact) (*mautrix.RespSendEvent, error) {
	return i.ia.RedactEvent(ctx, roomID, eventID, extra...)
}

func (i intent) SetReadMarkers(ctx context.Context, roomID id.RoomID, content any) error {
	return i.ia.SetReadMarkers(ctx, roomID, content)
}

func (i intent) SendReceipt(ctx context.Context, roomID id.RoomID, eventID id.EventID, receiptType event.ReceiptType, content any) error {
	return i.ia.SendReceipt(ctx, roomID, eventID, receiptType, content)
}

func (i intent) UserTyping(ctx context.Context, roomID id.RoomID, typing bool, timeout time.Duration) (*mautrix.RespTyping, error) {
	return i.ia.UserTyping(ctx, roomID, typing, timeout)
}

// presenceBody is the body of PUT /presence/{userId}/status. status_msg is
// always sent: mautrix's ReqPresence omits an empty one, and homeservers
// keep the previous message when the field is missing, so a contact who
// cleared their status would keep showing the old one.
type presenceBody struct {
	Presence  string `json:"presence"`
	StatusMsg string `json:"status_msg"`
}

func (i intent) SetPresence(ctx context.Context, presence, statusMsg string) error {
	url := i.ia.BuildClientURL("v3", "presence", i.ia.UserID, "status")
	_, err := i.ia.MakeRequest(ctx, http.MethodPut, url, &presenceBody{Presence: presence, StatusMsg: statusMsg}, nil)
	return err
}

func (i intent) CreateRoom(ctx context.Context, req *mautrix.ReqCreateRoom) (*mautrix.RespCreateRoom, error) {
	return i.ia.CreateRoom(ctx, req)
}

func (i intent) JoinRoomByID(ctx context.Context, roomID id.RoomID, extraContent ...map[string]any) (*mautrix.RespJoinRoom, error) {
	return i.ia.JoinRoomByID(ctx, roomID, extraContent...)
}

func (i intent) LeaveRoom(ctx context.Context, roomID id.RoomID, extra ...any) (*mautrix.RespLeaveRoom, error) {
	return i.ia.LeaveRoom(ctx, roomID, extra...)
}

func (i intent) InviteUser(ctx context.Context, roomID id.RoomID, req *mautrix.ReqInviteUser, extraContent ...map[string]any) (*mautrix.RespInviteUser, error) {
	return i.ia.InviteUser(ctx, roomID, req, extraContent...)
}

func (i intent) StateEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, stateKey string, out any) error {
	return i.ia.StateEvent(ctx, roomID, eventType, stateKey, out)
}

func (i intent) RoomStateEvent(ctx context.Context, roomID id.RoomID, eventType event.Type, stateKey string, out any) error {
	return i.ia.Client.StateEvent(ctx, roomID, eventType, stateKey, out)
}

func (i intent) Members(ctx context.Context, roomID id.RoomID, req ...mautrix.ReqMembers) (*mautrix.RespMembers, error) {
	return i.ia.Members(ctx, roomID, req...)
}

func (i intent) JoinedMembers(ctx context.Context, roomID id.RoomID) (*mautrix.RespJoinedMembers, error) {
	return i.ia.JoinedMembers(ctx, roomID)
}

func (i intent) JoinedRooms(ctx context.Context) (*mautrix.RespJoinedRooms, error) {
	return i.ia.JoinedRooms(ctx)
}

func (i intent) Messages(ctx context.Context, roomID id.RoomID, from, to string, dir mautrix.Direction, filter *mautrix.FilterPart, limit int) (*mautrix.RespMessages, error) {
	return i.ia.Messages(ctx, roomID, from, to, dir, filter, limit)
}

func (i intent) GetEvent(ctx context.Context, roomID id.RoomID, eventID id.EventID) (*event.Event, error) {
	return i.ia.GetEvent(ctx, roomID, eventID)
}

func (i intent) EventsAfter(ctx context.Context, roomID id.RoomID, eventID id.EventID, limit int) ([]json.RawMessage, error) {
	// Read with /context rather than /messages, which needs a pagination
	// token on some servers; the events stay raw for the caller to store.
	var resp struct {
		After []json.RawMessage `json:"events_after"`
	}
	url := i.ia.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "rooms", roomID, "context", eventID},
		map[string]string{"limit": fmt.Sprint(limit)})
	if _, err := i.ia.MakeRequest(ctx, http.MethodGet, url, nil, &resp); err != nil {
		return nil, err
	}
	return resp.After, nil
}

func (i intent) Sync(ctx context.Context, since, filter string, timeout time.Duration, out any) error {
	// No set_presence: Dendrite (the homeserver this is for) has no value
	// that leaves presence alone. With "offline" it recomputes the user's
	// presence from the syncs of the last 10 s, so a user whose client
	// long-polls would flip to offline at each event and back to online at
	// the client's next sync; without it the sync counts as the user being
	// online, which Dendrite keeps anyway once any client of theirs synced.
	query := map[string]string{"filter": filter, "timeout": fmt.Sprint(timeout.Milliseconds())}
	if since != "" {
		query["since"] = since
	}
	url := i.ia.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, query)
	_, err := i.ia.MakeRequest(ctx, http.MethodGet, url, nil, out)
	return err
}

func (i intent) UploadMedia(ctx context.Context, req mautrix.ReqUploadMedia) (*mautrix.RespMediaUpload, error) {
	return i.ia.UploadMedia(ctx, req)
}

func (i intent) UploadBytes(ctx context.Context, data []byte, contentType string) (*mautrix.RespMediaUpload, error) {
	return i.ia.UploadBytes(ctx, data, contentType)
}

func (i intent) SetDisplayName(ctx context.Context, name string) error {
	return i.ia.Client.SetDisplayName(ctx, name)
}

func (i intent) SetAvatarURL(ctx context.Context, uri id.ContentURI) error {
	return i.ia.SetAvatarURL(ctx, uri)
}

func (i intent) GetProfile(ctx context.Context, userID id.UserID) (*mautrix.RespUserProfile, error) {
	return i.ia.Client.GetProfile(ctx, userID)
}

func (i intent) Whoami(ctx context.Context) (*mautrix.RespWhoami, error) {
	return i.ia.Whoami(ctx)
}

func (i intent) GetAccountData(ctx context.Context, eventType string, out any) error {
	return i.ia.Client.GetAccountData(ctx, eventType, out)
}

// SetAccountData sends a json.RawMessage as it is: json.Marshal would
// validate and compact it again, which for an m.direct of thousands of
// rooms is most of the cost of the write.
func (i intent) SetAccountData(ctx context.Context, eventType string, data any) error {
	raw, ok := data.(json.RawMessage)
	if !ok {
		return i.ia.Client.SetAccountData(ctx, eventType, data)
	}
	c := i.ia.Client
	_, err := c.MakeFullRequest(ctx, mautrix.FullRequest{
		Method:       http.MethodPut,
		URL:          c.BuildClientURL("v3", "user", c.UserID, "account_data", eventType),
		RequestBytes: raw,
		Headers:      http.Header{"Content-Type": {"application/json"}},
	})
	return err
}
