package sphinx

import (
	"crypto/subtle"
	"fmt"
	"sync"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// A sender multiplies by the same few public keys over and over: every
// header it builds takes one multiplication per hop by a node's Sphinx key,
// and every sealed body one by its recipient's key, and an epoch's topology
// has a handful of each. A key met again gets a table of its multiples, as
// edwards25519 keeps for its base point, and a multiplication by it then
// costs 64 table additions and 4 doublings instead of a 255-step ladder:
// about 2.5× less. Nodes, whose α differs in every packet, keep the ladder.
//
// The table lives on the Edwards curve: the X25519 u-coordinate maps to
// y = (u−1)/(u+1), either sign of x gives the same u of any multiple, and
// the result maps back with u = (Z+Y)/(Z−Y). The scalar is used as the
// exact integer the ladder takes (below 2^255), not reduced mod ℓ, so a key
// with a low-order component gives the ladder's result too.

// fixedTable holds, for i in 0..31 and j in 0..7, (j+1)·256^i·P in cached
// form: 256 points, 40 KiB.
type fixedTable [32][8]cachedPoint

// cachedPoint is a point ready to be added: Y+X, Y−X, Z, 2d·T.
type cachedPoint struct {
	yPlusX, yMinusX, z, t2d field.Element
}

// extPoint is a point in extended coordinates: x = X/Z, y = Y/Z, XY = ZT.
type extPoint struct {
	x, y, z, t field.Element
}

// completedPoint is the result of an addition or doubling before the
// division: x = X/Z, y = Y/T.
type completedPoint struct {
	x, y, z, t field.Element
}

var d2 = func() field.Element {
	// d = −121665/121666, the twisted Edwards curve's constant.
	var n, dd, d field.Element
	n.Mult32(new(field.Element).One(), 121665)
	n.Negate(&n)
	dd.Mult32(new(field.Element).One(), 121666)
	dd.Invert(&dd)
	d.Multiply(&n, &dd)
	return *d.Add(&d, &d)
}()

func (v *extPoint) identity() {
	v.x.Zero()
	v.y.One()
	v.z.One()
	v.t.Zero()
}

func (v *cachedPoint) identity() {
	v.yPlusX.One()
	v.yMinusX.One()
	v.z.One()
	v.t2d.Zero()
}

func (v *cachedPoint) from(p *extPoint) {
	v.yPlusX.Add(&p.y, &p.x)
	v.yMinusX.Subtract(&p.y, &p.x)
	v.z.Set(&p.z)
	v.t2d.Multiply(&p.t, &d2)
}

// add sets v = p + q.
func (v *completedPoint) add(p *extPoint, q *cachedPoint) {
	var yPlusX, yMinusX, pp, mm, tt2d, zz2 field.Element
	yPlusX.Add(&p.y, &p.x)
	yMinusX.Subtract(&p.y, &p.x)
	pp.Multiply(&yPlusX, &q.yPlusX)
	mm.Multiply(&yMinusX, &q.yMinusX)
	tt2d.Multiply(&p.t, &q.t2d)
	zz2.Multiply(&p.z, &q.z)
	zz2.Add(&zz2, &zz2)
	v.x.Subtract(&pp, &mm)
	v.y.Add(&pp, &mm)
	v.z.Add(&zz2, &tt2d)
	v.t.Subtract(&zz2, &tt2d)
}

// double sets v = 2p (p's T is not read).
func (v *completedPoint) double(p *extPoint) {
	var xx, yy, zz2, s field.Element
	xx.Square(&p.x)
	yy.Square(&p.y)
	zz2.Square(&p.z)
	zz2.Add(&zz2, &zz2)
	s.Add(&p.x, &p.y)
	s.Square(&s)
	v.y.Add(&yy, &xx)
	v.z.Subtract(&yy, &xx)
	v.x.Subtract(&s, &v.y)
	v.t.Subtract(&zz2, &v.z)
}

func (v *extPoint) from(c *completedPoint) {
	v.x.Multiply(&c.x, &c.t)
	v.y.Multiply(&c.y, &c.z)
	v.z.Multiply(&c.z, &c.t)
	v.t.Multiply(&c.x, &c.y)
}

// newFixedTable builds the table of the X25519 u-coordinate u; false when u
// is not the u of a point on the curve (a point of the twist, or u = −1),
// which the ladder still takes.
func newFixedTable(u *[32]byte) (*fixedTable, bool) {
	var fu, num, den, y field.Element
	if _, err := fu.SetBytes(u[:]); err != nil {
		return nil, false
	}
	num.Subtract(&fu, new(field.Element).One())
	den.Add(&fu, new(field.Element).One())
	if den.Equal(new(field.Element).Zero()) == 1 {
		return nil, false
	}
	y.Multiply(&num, den.Invert(&den))
	var ep edwards25519.Point
	if _, err := ep.SetBytes(y.Bytes()); err != nil {
		return nil, false // not on the curve: the twist
	}
	var p extPoint
	x, yy, z, t := ep.ExtendedCoordinates()
	p.x, p.y, p.z, p.t = *x, *yy, *z, *t

	tab := new(fixedTable)
	var c completedPoint
	for i := range tab {
		// p = 256^i·P; the row holds its multiples 1..8.
		tab[i][0].from(&p)
		q := p
		for j := 1; j < 8; j++ {
			c.add(&q, &tab[i][0])
			q.from(&c)
			tab[i][j].from(&q)
		}
		for range 8 {
			c.double(&p)
			p.from(&c)
		}
	}
	return tab, true
}

// selectCached sets v = e·256^i·P in constant time, for −8 ≤ e ≤ 8.
func (tab *fixedTable) selectCached(v *cachedPoint, i int, e int8) {
	neg := int((uint8(e) >> 7) & 1)
	abs := int8(int(e) * (1 - 2*neg)) // |e|, branch-free
	v.identity()
	for j := range 8 {
		cond := subtle.ConstantTimeByteEq(uint8(abs), uint8(j+1))
		t := &tab[i][j]
		v.yPlusX.Select(&t.yPlusX, &v.yPlusX, cond)
		v.yMinusX.Select(&t.yMinusX, &v.yMinusX, cond)
		v.z.Select(&t.z, &v.z, cond)
		v.t2d.Select(&t.t2d, &v.t2d, cond)
	}
	// −(x, y) = (−x, y): swap Y+X and Y−X, negate T.
	v.yPlusX.Swap(&v.yMinusX, neg)
	var nt field.Element
	nt.Negate(&v.t2d)
	v.t2d.Select(&nt, &v.t2d, neg)
}

// mult sets out to the u-coordinate of k·P, k a little-endian integer below
// 2^255, in constant time in k. It is ladder(out, k, u) for P's u.
func (tab *fixedTable) mult(out, k *[32]byte) {
	// Signed radix 16: k = Σ e[i]·16^i with −8 ≤ e[i] < 8 (the last ≤ 8).
	var e [64]int8
	for i, b := range k {
		e[2*i] = int8(b & 15)
		e[2*i+1] = int8(b >> 4)
	}
	var carry int8
	for i := range 63 {
		e[i] += carry
		carry = (e[i] + 8) >> 4
		e[i] -= carry << 4
	}
	e[63] += carry

	// Odd digits, times 16, then even digits: each row serves two digits.
	var q extPoint
	q.identity()
	var c completedPoint
	var m cachedPoint
	for i := 1; i < 64; i += 2 {
		tab.selectCached(&m, i/2, e[i])
		c.add(&q, &m)
		q.from(&c)
	}
	for range 4 {
		c.double(&q)
		q.from(&c)
	}
	for i := 0; i < 64; i += 2 {
		tab.selectCached(&m, i/2, e[i])
		c.add(&q, &m)
		q.from(&c)
	}
	// u = (Z+Y)/(Z−Y); the identity (Z = Y) gives 0, as the ladder does.
	var n, d field.Element
	n.Add(&q.z, &q.y)
	d.Subtract(&q.z, &q.y)
	d.Invert(&d)
	n.Multiply(&n, &d)
	copy(out[:], n.Bytes())
}

// maxFixedTables bounds the tables kept (40 KiB each): more than an epoch's
// topology of mixes and gateways a client routes through.
const maxFixedTables = 256

// fixedTables is the process's tables by key. A key gets one the second
// time it is met: a key used once (a recipient written to once) costs no
// table.
var fixedTables = struct {
	sync.Mutex
	m map[[32]byte]fixedEntry
}{m: map[[32]byte]fixedEntry{}}

// fixedEntry is what is known of one key: met once (no table yet), its
// table, or that it has none (off the curve: the ladder serves it).
type fixedEntry struct {
	tab  *fixedTable
	none bool
}

// tableFor returns u's table, building it when u is met the second time;
// nil when there is none (yet).
func tableFor(u *[32]byte) *fixedTable {
	fixedTables.Lock()
	ent, seen := fixedTables.m[*u]
	if !seen {
		if len(fixedTables.m) >= maxFixedTables {
			clear(fixedTables.m) // a new topology: start again
		}
		fixedTables.m[*u] = fixedEntry{}
	}
	fixedTables.Unlock()
	if !seen || ent.tab != nil || ent.none {
		return ent.tab
	}
	// Built outside the lock: two builders of one key waste one table.
	tab, ok := newFixedTable(u)
	fixedTables.Lock()
	fixedTables.m[*u] = fixedEntry{tab: tab, none: !ok}
	fixedTables.Unlock()
	return tab
}

// fixedSecret is sharedSecret for a sender's multiplication by a public key
// it uses again and again (a node's Sphinx key, a recipient's key): through
// the key's table once it has one.
func fixedSecret(out, k, u *[32]byte) error {
	tab := tableFor(u)
	if tab == nil || k[31] >= 128 {
		return sharedSecret(out, k, u)
	}
	tab.mult(out, k)
	if subtle.ConstantTimeCompare(out[:], zero32[:]) == 1 {
		return fmt.Errorf("%w: low-order point", ErrBadPoint)
	}
	return nil
}
