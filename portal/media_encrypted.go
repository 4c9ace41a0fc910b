package portal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// encryptedMediaRetention is how long the keys of an encrypted file stay
// fetchable: a command is re-sent, with a fresh URL, for as long as it is
// pending, which a connector offline for weeks could make long.
const encryptedMediaRetention = 30 * 24 * time.Hour

// encryptedAttachment opens a file the user sent in an encrypted room (its
// key and hash are in the event). Up to the inline limit it is decrypted
// here and passed inline; a larger one is passed by URL: the connector
// fetches it from the media endpoint, which decrypts it while streaming
// (serveEncrypted). Its keys stay in the database under an unguessable
// handle, never in the URL, which ends up in logs.
func (m *Manager) encryptedAttachment(ctx context.Context, content *event.MessageEventContent) (*connector.Attachment, string, error) {
	name := content.GetFileName()
	uri, err := content.File.URL.Parse()
	if err != nil {
		return nil, fmt.Sprintf("⚠️ %q was not delivered: its file address is not valid.", name), nil
	}
	if err = content.File.PrepareForDecryption(); err != nil {
		return nil, fmt.Sprintf("⚠️ %q was not delivered: its encryption keys are not valid.", name), nil
	}
	att, notice, err := m.fileAttachment(ctx, name, content.Info, uri, content.File.DecryptInPlace)
	if err != nil || notice != "" || att.Data != nil {
		return att, notice, err
	}
	if m.e2ee == nil {
		// Without encryption there is no key to seal the file's keys with.
		return nil, fmt.Sprintf("⚠️ %q was not delivered: encrypted files can be passed on up to %s.",
			name, humanBytes(m.inlineLimit())), nil
	}
	sealed, err := m.e2ee.SealFileKeys(&content.File.EncryptedFile)
	if err != nil {
		return nil, "", fmt.Errorf("seal file keys: %w", err)
	}
	handle, err := newMediaHandle()
	if err != nil {
		return nil, "", err
	}
	err = m.db.EncMedia.Put(ctx, &database.EncryptedMedia{
		Handle: handle, MXC: content.File.URL, Sealed: sealed, MimeType: att.MimeType, CreatedAt: time.Now(),
	})
	if err != nil {
		return nil, "", fmt.Errorf("store encrypted file keys: %w", err)
	}
	att.URL = connector.MediaPath(connector.EncryptedMediaServer, handle)
	return att, "", nil
}

// newMediaHandle is 256 random bits.
func newMediaHandle() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("media handle: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// serveEncrypted streams an encrypted file to the connector, decrypting it
// on the way. The whole file is checked against its SHA-256, which is only
// known at the end: the last chunk is held back until then, and on a
// mismatch (or a body cut short) the response is aborted, so the connector
// sees a failed download, never a complete corrupt file. A Range header is
// ignored (the answer is the whole file with 200, as HTTP allows): a part
// could be decrypted, but not checked against the hash.
func (m *Manager) serveEncrypted(w http.ResponseWriter, r *http.Request, handle string, log zerolog.Logger) {
	ctx := r.Context()
	row, err := m.db.EncMedia.Get(ctx, handle)
	if err != nil {
		log.Err(err).Msg("Failed to look up an encrypted file")
		http.Error(w, "media not available", http.StatusInternalServerError)
		return
	} else if row == nil || m.e2ee == nil {
		http.NotFound(w, r)
		return
	}
	file, err := m.e2ee.OpenFileKeys(row.Sealed)
	if err != nil {
		log.Err(err).Msg("Stored keys of an encrypted file do not open")
		http.Error(w, "media not available", http.StatusInternalServerError)
		return
	}
	uri, err := row.MXC.Parse()
	if err != nil {
		http.NotFound(w, r)
		return
	}
	resp, ok := m.fetchForConnector(w, r, uri, nil, log)
	if !ok {
		return
	}
	defer resp.Body.Close()
	limit := m.cfg.Bridge.MaxMediaBytes
	mime := row.MimeType
	if mime == "" {
		mime = "application/octet-stream"
	}
	w.Header().Set("Content-Type", mime)
	if resp.ContentLength >= 0 {
		// AES-CTR keeps the length.
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	dec := file.DecryptStream(&limitedReader{r: resp.Body, left: limit})
	n, err := copyVerified(w, dec, dec.Close)
	if err != nil {
		log.Warn().Err(err).Int64("bytes", n).Msg("Encrypted file did not decrypt to its hash, aborting the download")
		// Closes the connection without ending the body: the connector's
		// read fails.
		panic(http.ErrAbortHandler)
	}
	log.Debug().Int64("bytes", n).Msg("Served a decrypted file to the connector")
}

// verifiedChunk is how much of a decrypted file is held back until its hash
// has been checked.
const verifiedChunk = 32 << 10

// copyVerified copies src to w, but writes the last chunk only once src is
// at its end and verify has passed.
func copyVerified(w io.Writer, src io.Reader, verify func() error) (int64, error) {
	cur, next := make([]byte, verifiedChunk), make([]byte, verifiedChunk)
	var pending []byte
	var written int64
	for {
		n, err := io.ReadFull(src, cur)
		if n > 0 {
			if len(pending) > 0 {
				k, werr := w.Write(pending)
				written += int64(k)
				if werr != nil {
					return written, werr
				}
			}
			pending = cur[:n]
			cur, next = next, cur
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		} else if err != nil {
			return written, err
		}
	}
	if err := verify(); err != nil {
		return written, err
	}
	k, err := w.Write(pending)
	return written + int64(k), err
}
