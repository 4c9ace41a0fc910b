package portal

import (
	"bytes"
	"errors"
	"testing"
)

// TestCopyVerified: the last chunk of a decrypted file reaches the
// connector only once the hash checked out; on a mismatch it never does.
func TestCopyVerified(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), verifiedChunk/5+3) // two chunks and a bit
	for _, size := range []int{0, 1, verifiedChunk, verifiedChunk + 1, len(data)} {
		var ok bytes.Buffer
		n, err := copyVerified(&ok, bytes.NewReader(data[:size]), func() error { return nil })
		if err != nil || n != int64(size) || !bytes.Equal(ok.Bytes(), data[:size]) {
			t.Fatalf("size %d, hash good: wrote %d bytes (%v), want all", size, n, err)
		}
		var bad bytes.Buffer
		mismatch := errors.New("hash mismatch")
		n, err = copyVerified(&bad, bytes.NewReader(data[:size]), func() error { return mismatch })
		if !errors.Is(err, mismatch) || (size > 0 && n >= int64(size)) || int64(bad.Len()) != n {
			t.Fatalf("size %d, hash bad: wrote %d bytes (%v), want fewer than all and the error", size, n, err)
		}
	}
}
