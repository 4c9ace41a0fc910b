package database

import (
	"context"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// EncryptedMediaQuery reads and writes the encrypted_media table.
type EncryptedMediaQuery struct {
	*dbutil.QueryHelper[*EncryptedMedia]
}

// EncryptedMedia is an encrypted file from the user that a connector
// fetches from the bridge, which decrypts it on the way.
type EncryptedMedia struct {
	// Handle names the file in its media URL: random, so that it cannot be
	// guessed, and nothing else about the file is in the URL.
	Handle string
	MXC    id.ContentURIString
	// Sealed is the file's key, iv and hash (attachment.EncryptedFile as
	// JSON), sealed with a key derived from the pickle key.
	Sealed    []byte
	MimeType  string
	CreatedAt time.Time
}

// Scan reads an encrypted_media row.
func (e *EncryptedMedia) Scan(row dbutil.Scannable) (*EncryptedMedia, error) {
	var created int64
	err := row.Scan(&e.Handle, &e.MXC, &e.Sealed, &e.MimeType, &created)
	e.CreatedAt = time.UnixMilli(created)
	return e, err
}

// Put stores an encrypted file's keys under its handle.
func (q *EncryptedMediaQuery) Put(ctx context.Context, e *EncryptedMedia) error {
	return q.Exec(ctx, `INSERT INTO encrypted_media (handle, mxc, sealed, mime_type, created_at) VALUES ($1, $2, $3, $4, $5)`,
		e.Handle, e.MXC, e.Sealed, e.MimeType, e.CreatedAt.UnixMilli())
}

// Get returns the file under a handle, or nil.
func (q *EncryptedMediaQuery) Get(ctx context.Context, handle string) (*EncryptedMedia, error) {
	return q.QueryOne(ctx, `SELECT handle, mxc, sealed, mime_type, created_at FROM encrypted_media WHERE handle=$1`, handle)
}

// Prune forgets the files stored before the cutoff.
func (q *EncryptedMediaQuery) Prune(ctx context.Context, before time.Time) error {
	return q.Exec(ctx, `DELETE FROM encrypted_media WHERE created_at < $1`, before.UnixMilli())
}
