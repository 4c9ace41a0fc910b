package e2ee

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/crypto/attachment"
)

// What a sealed secret is for: each purpose has its own key derived from
// the pickle key, so one kind of sealed blob never opens as another.
const (
	purposeCrossSigning = "cross-signing"
	purposeFileKeys     = "file-keys"
)

// SealFileKeys seals an encrypted file's key, iv and hash for the database
// (the bridge keeps them to decrypt the file while a connector fetches it).
func (m *Manager) SealFileKeys(file *attachment.EncryptedFile) ([]byte, error) {
	plain, err := json.Marshal(file)
	if err != nil {
		return nil, err
	}
	return m.seal(purposeFileKeys, plain)
}

// OpenFileKeys is the inverse of SealFileKeys; the file comes back ready
// for decryption.
func (m *Manager) OpenFileKeys(sealed []byte) (*attachment.EncryptedFile, error) {
	plain, err := m.open(purposeFileKeys, sealed)
	if err != nil {
		return nil, fmt.Errorf("open file keys: %w", err)
	}
	var file attachment.EncryptedFile
	if err = json.Unmarshal(plain, &file); err != nil {
		return nil, fmt.Errorf("decode file keys: %w", err)
	}
	if err = file.PrepareForDecryption(); err != nil {
		return nil, err
	}
	return &file, nil
}

func (m *Manager) aead(purpose string) (cipher.AEAD, error) {
	key := sha256.Sum256([]byte("dmbridge " + purpose + "\x00" + m.o.Config.Encryption.PickleKey))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plain with AES-GCM under the purpose's key.
func (m *Manager) seal(purpose string, plain []byte) ([]byte, error) {
	gcm, err := m.aead(purpose)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err = rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, plain, nil), nil
}

func (m *Manager) open(purpose string, sealed []byte) ([]byte, error) {
	gcm, err := m.aead(purpose)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("sealed data too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], nil)
}
