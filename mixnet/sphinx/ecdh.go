package sphinx

import "crypto/rand"

// Generate makes k a new random key, as GenerateKey does, without
// allocating: a client seals each packet to a key of its own, which can
// live on its stack.
func (k *PrivateKey) Generate() {
	var b [32]byte
	rand.Read(b[:])
	k.set(b[:]) // length is right, so it cannot fail
}

// ECDH sets out to the X25519 shared secret of k and peer, what crypto/ecdh's
// PrivateKey.ECDH returns, and refuses a low-order peer as it does. Unlike
// crypto/ecdh it allocates nothing: a client seals each packet it sends to
// a fresh key of this type.
//
// A peer met again is multiplied through a table of its own (fixedkey.go),
// at about 2.5× less than a ladder: use it for peers that recur (a sender
// sealing to one recipient), as nodes' keys recur in headers.
func (k *PrivateKey) ECDH(out, peer *[32]byte) error {
	return fixedSecret(out, &k.scalar, peer)
}
