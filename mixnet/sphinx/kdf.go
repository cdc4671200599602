package sphinx

import (
	"crypto/sha256"
	"crypto/subtle"

	"golang.org/x/crypto/chacha20"
)

// Domain separation: every key this package derives is bound to these
// strings, so nothing here can be confused with another protocol's use of the
// same shared secret.
const (
	hkdfSalt = "nym-go/sphinx/v1 hkdf salt"
	hkdfInfo = "nym-go/sphinx/v1 hop"
)

// hopKeys is everything one hop's shared secret expands into.
type hopKeys struct {
	header   [32]byte // ChaCha20 key for β
	mac      [32]byte // HMAC-SHA256 key for γ
	payload  [32]byte // seed of the Lioness keys for the payload
	blinding [64]byte // reduced mod ℓ into the blinding scalar
	replay   [32]byte // replay tag: equal for every copy of the same packet
}

const hopKeysLen = 32 + 32 + 32 + 64 + 32

// hmacSHA256 writes HMAC-SHA256(key, msg...) to out. It uses sha256.Sum256 on
// a stack buffer instead of crypto/hmac, which allocates two hash states per
// key; keys here change with every packet.
func hmacSHA256(out *[32]byte, key *[32]byte, msg ...[]byte) {
	var buf [64 + BetaSize + 64]byte // ipad block ‖ message (≤ β + small extras)
	n := 64
	for _, m := range msg {
		n += len(m)
	}
	var in []byte
	if n <= len(buf) {
		in = buf[:0]
	} else {
		in = make([]byte, 0, n)
	}
	var pad [64]byte
	copy(pad[:], key[:])
	for i := range pad {
		pad[i] ^= 0x36
	}
	in = append(in, pad[:]...)
	for _, m := range msg {
		in = append(in, m...)
	}
	inner := sha256.Sum256(in)
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	var outer [96]byte
	copy(outer[:64], pad[:])
	copy(outer[64:], inner[:])
	*out = sha256.Sum256(outer[:])
}

// deriveHopKeys expands the hop's shared secret: HKDF-SHA256 (RFC 5869)
// with a 32-byte output, then ChaCha20's keystream under that output for the
// 192 bytes of keys. Expanding all of it with HKDF costs seven HMACs, 2.4 µs a
// hop; this costs two HMACs and three ChaCha20 blocks, 1 µs.
func deriveHopKeys(k *hopKeys, secret *[32]byte) {
	var salt [32]byte
	copy(salt[:], hkdfSalt) // shorter than a block: HMAC zero-pads it anyway
	var prk, okm [32]byte
	hmacSHA256(&prk, &salt, secret[:])
	hmacSHA256(&okm, &prk, []byte(hkdfInfo), []byte{1})

	var buf [hopKeysLen]byte
	c, _ := chacha20.NewUnauthenticatedCipher(okm[:], hopKeysNonce[:])
	c.XORKeyStream(buf[:], buf[:])
	o := buf[:]
	o = o[copy(k.header[:], o):]
	o = o[copy(k.mac[:], o):]
	o = o[copy(k.payload[:], o):]
	o = o[copy(k.blinding[:], o):]
	copy(k.replay[:], o)
}

var hopKeysNonce = [chacha20.NonceSize]byte{'h', 'o', 'p', ' ', 'k', 'e', 'y', 's'}

// headerMAC is γ for β under key.
func headerMAC(out *[MACSize]byte, key *[32]byte, beta []byte) {
	var full [32]byte
	hmacSHA256(&full, key, beta)
	copy(out[:], full[:MACSize])
}

// macEqual compares MACs in constant time.
func macEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
