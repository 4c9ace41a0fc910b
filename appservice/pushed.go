package appservice

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Bounds on the encryption data of one transaction. Synapse sends at most
// 100 to-device messages per transaction; device-list changes and key
// counts name at most the users that share a room with the bridge's users
// and the bridge's devices. Anything beyond is dropped with a warning.
const (
	maxPushedToDevice   = 1000
	maxPushedUsers      = 10000
	maxPushedOTKDevices = 10000
	// maxIDBytes bounds a user or device id (the spec's 255 for user ids).
	maxIDBytes = 255
)

// rawCryptoFields are a transaction's encryption fields, under their stable
// and their unstable (MSC2409/MSC3202, what Synapse sends) names. They stay
// raw so that a malformed field drops that field, not the transaction: a
// refused transaction is resent forever and holds up every event behind it.
type rawCryptoFields struct {
	ToDevice               json.RawMessage `json:"to_device"`
	MSC2409ToDevice        json.RawMessage `json:"de.sorunome.msc2409.to_device"`
	DeviceLists            json.RawMessage `json:"device_lists"`
	MSC3202DeviceLists     json.RawMessage `json:"org.matrix.msc3202.device_lists"`
	OTKCounts              json.RawMessage `json:"device_one_time_keys_count"`
	MSC3202OTKCounts       json.RawMessage `json:"org.matrix.msc3202.device_one_time_keys_count"`
	FallbackKeyTypes       json.RawMessage `json:"device_unused_fallback_key_types"`
	MSC3202FallbackKeyType json.RawMessage `json:"org.matrix.msc3202.device_unused_fallback_key_types"`
}

// CryptoPush is the encryption data the homeserver pushed in one
// transaction, checked for shape and size. Who the bridge owns is for the
// receiver to decide: the ids here are only what the homeserver named.
//
// Unused fallback key types are not carried: mautrix's Olm machine does not
// act on them in a /sync response either.
type CryptoPush struct {
	// ToDevice are to-device events, each with to_user_id and to_device_id
	// set and its content parsed.
	ToDevice []*event.Event
	// DeviceListChanged are the users whose device lists changed.
	DeviceListChanged []id.UserID
	// OTKCounts are one-time-key counts, each with UserID and DeviceID set.
	OTKCounts []mautrix.OTKCount
}

// Empty reports whether the push carries nothing.
func (p *CryptoPush) Empty() bool {
	return len(p.ToDevice) == 0 && len(p.DeviceListChanged) == 0 && len(p.OTKCounts) == 0
}

// CryptoSink receives the encryption data pushed in transactions. It is
// called before the transaction is stored and acknowledged, and again for a
// repeated transaction, so it must tolerate seeing a push twice (mautrix's
// Olm machine recognises an Olm message it has decrypted by its hash).
type CryptoSink interface {
	HandleCryptoPush(ctx context.Context, push *CryptoPush)
}

// SetCryptoSink makes the intake hand pushed encryption data to s. Without
// one the fields are ignored: the bridge then gets them by /sync.
func (l *Link) SetCryptoSink(s CryptoSink) { l.crypto = s }

// pickRaw prefers the stable field, as mautrix does.
func pickRaw(stable, unstable json.RawMessage) json.RawMessage {
	if len(stable) > 0 && string(stable) != "null" {
		return stable
	}
	return unstable
}

// ParseCryptoPush reads the encryption fields of a transaction body,
// dropping (with a log line) whatever is malformed or beyond the bounds.
func ParseCryptoPush(log zerolog.Logger, body []byte) *CryptoPush {
	var raw rawCryptoFields
	if err := json.Unmarshal(body, &raw); err != nil {
		log.Warn().Err(err).Msg("Ignoring the encryption fields of a transaction: not an object")
		return &CryptoPush{}
	}
	return raw.parse(log)
}

// parse checks the fields the transaction carried.
func (raw *rawCryptoFields) parse(log zerolog.Logger) *CryptoPush {
	push := &CryptoPush{}
	push.ToDevice = parseToDevice(log, pickRaw(raw.ToDevice, raw.MSC2409ToDevice))
	push.DeviceListChanged = parseDeviceLists(log, pickRaw(raw.DeviceLists, raw.MSC3202DeviceLists))
	push.OTKCounts = parseOTKCounts(log, pickRaw(raw.OTKCounts, raw.MSC3202OTKCounts))
	return push
}

// validUserID accepts what parses as @localpart:server within the bound.
func validUserID(u id.UserID) bool {
	if len(u) == 0 || len(u) > maxIDBytes {
		return false
	}
	_, _, err := u.Parse()
	return err == nil
}

func validDeviceID(d id.DeviceID) bool { return len(d) > 0 && len(d) <= maxIDBytes }

func parseToDevice(log zerolog.Logger, raw json.RawMessage) []*event.Event {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		log.Warn().Err(err).Msg("Dropping pushed to-device events: not a list")
		return nil
	}
	if len(list) > maxPushedToDevice {
		log.Warn().Int("count", len(list)).Int("kept", maxPushedToDevice).Msg("Dropping pushed to-device events beyond the bound")
		list = list[:maxPushedToDevice]
	}
	out := make([]*event.Event, 0, len(list))
	for i, item := range list {
		var evt event.Event
		if err := json.Unmarshal(item, &evt); err != nil {
			log.Warn().Int("index", i).Err(err).Msg("Dropping malformed pushed to-device event")
			continue
		}
		if !validUserID(evt.ToUserID) || !validDeviceID(evt.ToDeviceID) || !validUserID(evt.Sender) ||
			evt.Type.Type == "" || len(evt.Type.Type) > maxIDBytes {
			log.Warn().Int("index", i).Msg("Dropping pushed to-device event without valid to_user_id, to_device_id, sender and type")
			continue
		}
		evt.Type.Class = event.ToDeviceEventType
		evt.Mautrix.EventSource = event.SourceToDevice
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			log.Debug().Int("index", i).Str("type", evt.Type.Type).Err(err).Msg("Dropping pushed to-device event with unparsable content")
			continue
		}
		out = append(out, &evt)
	}
	return out
}

func parseDeviceLists(log zerolog.Logger, raw json.RawMessage) []id.UserID {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var lists struct {
		Changed []json.RawMessage `json:"changed"`
	}
	if err := json.Unmarshal(raw, &lists); err != nil {
		log.Warn().Err(err).Msg("Dropping pushed device-list changes: malformed")
		return nil
	}
	if len(lists.Changed) > maxPushedUsers {
		log.Warn().Int("count", len(lists.Changed)).Int("kept", maxPushedUsers).Msg("Dropping pushed device-list changes beyond the bound")
		lists.Changed = lists.Changed[:maxPushedUsers]
	}
	out := make([]id.UserID, 0, len(lists.Changed))
	seen := make(map[id.UserID]struct{}, len(lists.Changed))
	for _, item := range lists.Changed {
		var u id.UserID
		if err := json.Unmarshal(item, &u); err != nil || !validUserID(u) {
			log.Debug().Msg("Dropping an invalid user id from pushed device-list changes")
			continue
		}
		if _, dup := seen[u]; !dup {
			seen[u] = struct{}{}
			out = append(out, u)
		}
	}
	return out
}

func parseOTKCounts(log zerolog.Logger, raw json.RawMessage) []mautrix.OTKCount {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var byUser map[id.UserID]map[id.DeviceID]json.RawMessage
	if err := json.Unmarshal(raw, &byUser); err != nil {
		log.Warn().Err(err).Msg("Dropping pushed one-time-key counts: malformed")
		return nil
	}
	var out []mautrix.OTKCount
	// Sorted, so that which entries a bound cuts off does not depend on
	// map order.
	for _, userID := range slices.Sorted(maps.Keys(byUser)) {
		if !validUserID(userID) {
			log.Debug().Msg("Dropping pushed one-time-key counts for an invalid user id")
			continue
		}
		devices := byUser[userID]
		for _, deviceID := range slices.Sorted(maps.Keys(devices)) {
			if len(out) == maxPushedOTKDevices {
				log.Warn().Int("kept", maxPushedOTKDevices).Msg("Dropping pushed one-time-key counts beyond the bound")
				return out
			}
			var count mautrix.OTKCount
			if !validDeviceID(deviceID) || json.Unmarshal(devices[deviceID], &count) != nil ||
				count.SignedCurve25519 < 0 || count.Curve25519 < 0 {
				log.Debug().Stringer("user_id", userID).Msg("Dropping malformed pushed one-time-key count")
				continue
			}
			count.UserID, count.DeviceID = userID, deviceID
			out = append(out, count)
		}
	}
	return out
}
