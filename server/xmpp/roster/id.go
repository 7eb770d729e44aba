package roster

import (
	"crypto/rand"
	"encoding/binary"
)

// pushID returns an unpredictable id for roster pushes, so a client cannot
// be confused by a forged result matching a guessed id.
func pushID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}
