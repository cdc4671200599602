package sphinx

import (
	"crypto/rand"
	"testing"

	"filippo.io/edwards25519"
)

// A key's table gives the ladder's result for every scalar the sender
// uses: products of blinding factors mod ℓ, clamped private keys, the
// extremes, on honest keys and on keys with a low-order component.
func TestFixedTableMatchesLadder(t *testing.T) {
	var keys [][32]byte
	for range 4 {
		keys = append(keys, GenerateKey().PublicKey())
	}
	// A key plus the point of order 2: the table must not reduce it away.
	var s edwards25519.Scalar
	var rnd [64]byte
	rand.Read(rnd[:])
	s.SetUniformBytes(rnd[:])
	var p edwards25519.Point
	p.ScalarBaseMult(&s)
	var t8 edwards25519.Point
	// (0, −1), order 2: it changes k·P for odd k.
	t8b := [32]byte{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	if _, err := t8.SetBytes(t8b[:]); err != nil {
		t.Fatal(err)
	}
	p.Add(&p, &t8)
	keys = append(keys, [32]byte(p.BytesMontgomery()))

	scalars := [][32]byte{{}, {1}, {2}, {8}}
	var max [32]byte
	for i := range max {
		max[i] = 0xff
	}
	max[31] = 0x7f
	scalars = append(scalars, max)
	for range 20 {
		rand.Read(rnd[:])
		s.SetUniformBytes(rnd[:])
		scalars = append(scalars, [32]byte(s.Bytes()))
		var k PrivateKey
		k.Generate()
		scalars = append(scalars, k.scalar)
	}
	for ki, u := range keys {
		tab, ok := newFixedTable(&u)
		if !ok {
			t.Fatalf("key %d: no table", ki)
		}
		for si, k := range scalars {
			var want, got [32]byte
			if err := ladder(&want, &k, &u); err != nil {
				t.Fatal(err)
			}
			tab.mult(&got, &k)
			if got != want {
				t.Fatalf("key %d scalar %d (%x): table %x, ladder %x", ki, si, k, got, want)
			}
		}
	}
}

// A u off the curve (on its twist), and u = −1, get no table; fixedSecret
// then gives the ladder's answer.
func TestFixedTableOffCurve(t *testing.T) {
	minusOne := [32]byte{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	if _, ok := newFixedTable(&minusOne); ok {
		t.Error("a table for u = −1")
	}
	twist := 0
	for u := byte(2); u < 40; u++ {
		key := [32]byte{u}
		if _, ok := newFixedTable(&key); ok {
			continue
		}
		twist++
		k := [32]byte{5, 7, 9}
		var want, got [32]byte
		errW := sharedSecret(&want, &k, &key)
		for range 3 { // the second meeting would build a table
			if err := fixedSecret(&got, &k, &key); (err == nil) != (errW == nil) || got != want {
				t.Fatalf("u %d off the curve: fixedSecret %x %v, ladder %x %v", u, got, err, want, errW)
			}
		}
	}
	if twist == 0 {
		t.Fatal("no small u off the curve: the test shows nothing")
	}
}

// fixedSecret through a table gives what sharedSecret gives, from the
// second use of a key on.
func TestFixedSecret(t *testing.T) {
	u := GenerateKey().PublicKey()
	for i := range 3 {
		var k PrivateKey
		k.Generate()
		var want, got [32]byte
		if err := sharedSecret(&want, &k.scalar, &u); err != nil {
			t.Fatal(err)
		}
		if err := fixedSecret(&got, &k.scalar, &u); err != nil || got != want {
			t.Fatalf("use %d: %x %v, want %x", i, got, err, want)
		}
	}
	if tableFor(&u) == nil {
		t.Fatal("no table after three uses")
	}
}

// BenchmarkFixedKey is one multiplication by a key that has a table:
// against BenchmarkFloorX25519's ladder.
func BenchmarkFixedKey(b *testing.B) {
	u := GenerateKey().PublicKey()
	tab, _ := newFixedTable(&u)
	var k PrivateKey
	k.Generate()
	var out [32]byte
	b.ReportAllocs()
	for b.Loop() {
		tab.mult(&out, &k.scalar)
	}
}

// BenchmarkFixedTable is building one key's table.
func BenchmarkFixedTable(b *testing.B) {
	u := GenerateKey().PublicKey()
	for b.Loop() {
		newFixedTable(&u)
	}
}
