package portal

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/e2ee"
	"github.com/dmbridge/dmbridge/matrix"
)

// Every place the portals touch end-to-bridge encryption is in this file
// and in media_encrypted.go (the user's large encrypted files); sending is
// encrypted below the portals, by the ghost's intent (see
// e2ee.Manager.Attach) or the double puppet's (AttachDoublePuppet), so the
// send paths do not change.

// SetEncryption turns end-to-bridge encryption on. It must be called before
// Start.
func (m *Manager) SetEncryption(e *e2ee.Manager) {
	m.e2ee = e
	m.ghosts.SetIntentHook(e.Attach)
	m.ghosts.SetRegisteredHook(e.Prepare)
	// The user's double puppet borrows the portal ghost's device; see
	// e2ee.Manager.AttachDoublePuppet for why it never gets one of its own.
	m.mx.SetDoublePuppetHook(e.AttachDoublePuppet(m.roomGhost))
}

// roomGhost is the ghost of the portal in roomID (e2ee.RoomGhost).
func (m *Manager) roomGhost(ctx context.Context, roomID id.RoomID) (id.UserID, error) {
	p, err := m.db.Portal.GetByRoom(ctx, roomID)
	if err != nil {
		return "", fmt.Errorf("look up portal of %s: %w", roomID, err)
	} else if p == nil || p.ContactID == "" {
		return "", fmt.Errorf("%s is not a portal", roomID)
	}
	return m.ghosts.MXID(p.ContactID), nil
}

// ghostBeforeJoin gives an invited ghost its device before it joins, so the
// user's client, which may encrypt its first message right after inviting,
// can share the room key with it.
func (m *Manager) ghostBeforeJoin(ctx context.Context, ghost id.UserID) {
	if m.e2ee == nil {
		return
	}
	if err := m.e2ee.Ensure(ctx, ghost); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to give the ghost a device")
	}
}

// ghostJoined reads whether the room the ghost joined is encrypted; if it
// is, the ghost's device starts receiving its keys. A failed read is an
// error, for the invite to be handled again: for the upgrade of an
// encrypted DM this read is the only way the bridge learns that the new
// room is encrypted (Dendrite pushes the appservice none of the state
// /upgrade copied in before the ghost's invite), and a room taken for a
// plain one would get the contact's messages in the clear. A device that
// fails to start only costs a retry of the first send, which starts it
// again.
func (m *Manager) ghostJoined(ctx context.Context, intent matrix.API, roomID id.RoomID) error {
	if m.e2ee == nil {
		return nil
	}
	encrypted, err := m.e2ee.RoomEncryption(ctx, intent, roomID)
	if err != nil {
		return fmt.Errorf("read whether the joined room is encrypted: %w", err)
	}
	if encrypted {
		if _, err = m.e2ee.Active(ctx, intent.UserID()); err != nil {
			zerolog.Ctx(ctx).Err(err).Msg("Failed to start the ghost's device")
		}
	}
	return nil
}

// encryptionEnabled follows the user switching encryption on in a portal:
// the state store has recorded it, the ghost's device must now listen.
func (m *Manager) encryptionEnabled(ctx context.Context, p *database.Portal) {
	if m.e2ee == nil {
		return
	}
	if _, err := m.e2ee.Active(ctx, m.ghosts.MXID(p.ContactID)); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to start the ghost's device for a newly encrypted portal")
	}
}

// encryptedRoomState is the initial state that makes a new portal encrypted
// (encryption.default, or encryption.require, under which a plain portal
// would refuse every message), with the ghost's device ready for it.
func (m *Manager) encryptedRoomState(ctx context.Context, ghost id.UserID) ([]*event.Event, error) {
	if m.e2ee == nil || !(m.cfg.Encryption.Default || m.cfg.Encryption.Require) {
		return nil, nil
	}
	if _, err := m.e2ee.Active(ctx, ghost); err != nil {
		return nil, err
	}
	return []*event.Event{{
		Type: event.StateEncryption, StateKey: new(string),
		Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
	}}, nil
}

// matrixEncrypted decrypts the user's event with the portal ghost's device
// and handles the plaintext like any event. One that cannot be decrypted
// (or, with encryption off, any) is answered with a notice replying to it,
// under a transaction id of the event so a retry does not show it twice.
func (m *Manager) matrixEncrypted(ctx context.Context, row *database.MXEvent, evt *event.Event, login *database.Login, p *database.Portal) error {
	log := zerolog.Ctx(ctx)
	if m.e2ee == nil {
		log.Warn().Msg("Encrypted event in a portal; encryption is off, telling the user")
		m.replyNotice(ctx, p, evt.ID, "⚠️ Your "+mxEventNoun(row.Data)+" was not delivered: it is end-to-end encrypted, and this "+
			"bridge does not serve encrypted rooms. Messages sent encrypted in this room do not reach the contact.",
			mxNoticeTxn("enc", row))
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "encryption is off")
	}
	var dec *event.Event
	var err error
	if !unslotted(ctx, func() { dec, err = m.e2ee.Decrypt(ctx, m.ghosts.MXID(p.ContactID), evt) }) {
		return ctx.Err()
	}
	if err != nil {
		if !errors.Is(err, e2ee.ErrUndecryptable) && ctx.Err() == nil {
			// The device could not be reached or loaded: a passing failure.
			return err
		}
		log.Warn().Err(err).Msg("Could not decrypt the user's event")
		m.replyNotice(ctx, p, evt.ID, "⚠️ Your "+mxEventNoun(row.Data)+" was not delivered: the bridge never received the key "+
			"to decrypt it. Your client may not have shared it with the contact's device; try again.",
			mxNoticeTxn("enc", row))
		return m.db.MXEvent.MarkDone(ctx, row.Seq, err.Error())
	}
	dec.Mautrix.EventSource = evt.Mautrix.EventSource
	if dec.Content.Raw[mas.DoublePuppetKey] == appservice.DoublePuppetValue {
		// The bridge's own double-puppet echo (encrypted with the ghost's
		// session), whose marker was only inside.
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	}
	if dec.Type == event.EventEncrypted {
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "encrypted twice")
	}
	return m.dispatchMatrix(ctx, row, dec, login, p)
}

// refuseUnencrypted applies encryption.require: in a portal, the user's
// messages and reactions must come encrypted.
func (m *Manager) refuseUnencrypted(ctx context.Context, row *database.MXEvent, evt *event.Event, p *database.Portal) bool {
	if m.e2ee == nil || !m.cfg.Encryption.Require || evt.Mautrix.WasEncrypted {
		return false
	}
	if evt.Type != event.EventMessage && evt.Type != event.EventReaction && evt.Type != event.EventSticker {
		return false
	}
	m.replyNotice(ctx, p, evt.ID, "⚠️ Your "+mxEventNoun(row.Data)+" was not delivered: this bridge only accepts encrypted "+
		"messages. Turn encryption on in this room.", mxNoticeTxn("unenc", row))
	return true
}

// replyNotice is a notice from the ghost replying to one of the user's events.
func (m *Manager) replyNotice(ctx context.Context, p *database.Portal, to id.EventID, text, txn string) {
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: text}
	content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(to)
	m.postNotice(ctx, m.ghosts.Intent(p.ContactID), p.RoomID, content, txn)
}

// decryptOwn replaces the intent's own encrypted events among evts by their
// plaintext, where its device can open them (it keeps the keys of what it
// sent), so that a send in doubt is recognised in an encrypted room too.
func decryptOwn(ctx context.Context, intent matrix.API, evts []*event.Event) []*event.Event {
	if intent.Crypto() == nil {
		return evts
	}
	out := make([]*event.Event, 0, len(evts))
	for _, evt := range evts {
		if evt.Sender == intent.UserID() {
			evt = openEvent(ctx, intent, evt)
		}
		out = append(out, evt)
	}
	return out
}

// openEvent is the plaintext of evt, when it is encrypted and the intent's
// device can open it (without waiting for a missing key), or else evt.
func openEvent(ctx context.Context, intent matrix.API, evt *event.Event) *event.Event {
	crypto := intent.Crypto()
	if crypto == nil || evt.Type != event.EventEncrypted {
		return evt
	}
	// An event may come parsed already (mautrix's GetEvent parses what it
	// reads), and ParseRaw refuses to parse it again: that refusal must
	// not leave the event closed.
	if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
		return evt
	}
	dec, err := crypto.Decrypt(ctx, evt)
	if err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Stringer("event_id", evt.ID).Msg("Cannot open the encrypted event")
		return evt
	}
	return dec
}

// encryptsFor reports whether what the intent sends into the portal is
// encrypted (its files then go to the media repository encrypted too).
func (m *Manager) encryptsFor(ctx context.Context, intent matrix.API, key database.PortalKey) bool {
	if m.e2ee == nil || intent.Crypto() == nil {
		return false
	}
	p, err := m.db.Portal.Get(ctx, key)
	if err != nil || p == nil || p.RoomID == "" {
		return false
	}
	encrypted, err := m.link.StateStore.IsEncrypted(ctx, p.RoomID)
	return err == nil && encrypted
}

// encryptedUpload is a file being encrypted on its way to the media
// repository; nil when the room is not encrypted.
type encryptedUpload struct {
	file   *attachment.EncryptedFile
	stream io.ReadCloser
}

// encryptUpload makes req upload the file encrypted (AES-CTR keeps its
// length), when encrypt is set.
func encryptUpload(encrypt bool, req *mautrix.ReqUploadMedia) *encryptedUpload {
	if !encrypt {
		return nil
	}
	u := &encryptedUpload{file: attachment.NewEncryptedFile()}
	u.stream = u.file.EncryptStream(req.Content)
	req.Content = u.stream
	req.ContentType = "application/octet-stream"
	return u
}

// finish puts the key, iv and hash into the content in place of the plain URL.
func (u *encryptedUpload) finish(content *event.MessageEventContent) error {
	if u == nil {
		return nil
	}
	// Closing computes the hash of what was uploaded.
	if err := u.stream.Close(); err != nil {
		return fmt.Errorf("encrypt attachment: %w", err)
	}
	content.File = &event.EncryptedFileInfo{EncryptedFile: *u.file, URL: content.URL}
	content.URL = ""
	return nil
}

// releaseGhostDevice stops the ghost device's /sync loop if the ghost is in
// no portal any more (e2ee.Release): a refused invite into an encrypted
// room or the end of its last portal. A failure costs only a loop, until
// the next start drops it.
func (m *Manager) releaseGhostDevice(ctx context.Context, ghost id.UserID) {
	if m.e2ee == nil {
		return
	}
	if err := m.e2ee.Release(ctx, ghost); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to release the ghost device's sync loop")
	}
}
