package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Small builders for nftables expressions, each the equivalent of a fragment
// of `nft` syntax (shown in the comments). Every match uses register 1.

const reg = 1

// matchIfname is `iifname NAME` or `oifname NAME` (or `!= NAME`).
func matchIfname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg},
		&expr.Cmp{Op: op, Register: reg, Data: b},
	}
}

func iifname(name string) []expr.Any { return matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, name) }
func oifname(name string) []expr.Any { return matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, name) }

// matchNfproto is `meta nfproto ipv4|ipv6`, needed in the inet family before
// reading an address out of the network header.
func matchNfproto(is4 bool) []expr.Any {
	proto := byte(unix.NFPROTO_IPV6)
	if is4 {
		proto = unix.NFPROTO_IPV4
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{proto}},
	}
}

// matchAddr is `ip saddr|daddr PREFIX` or its ip6 form.
func matchAddr(p netip.Prefix, dst bool) []expr.Any {
	p = p.Masked()
	is4 := p.Addr().Is4()
	var offset, size uint32 = 8, 16 // ip6 saddr
	if is4 {
		offset, size = 12, 4 // ip saddr
	}
	if dst {
		offset += size
	}
	out := matchNfproto(is4)
	out = append(out, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size})
	if p.Bits() < int(size*8) {
		out = append(out, &expr.Bitwise{
			SourceRegister: reg, DestRegister: reg, Len: size,
			Mask: prefixMask(p.Bits(), int(size)), Xor: make([]byte, size),
		})
	}
	return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: p.Addr().AsSlice()})
}

func prefixMask(bits, size int) []byte {
	m := make([]byte, size)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = ^byte(0xff >> bits)
			bits = 0
		}
	}
	return m
}

// matchL4proto is `meta l4proto tcp|udp|...`.
func matchL4proto(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{proto}},
	}
}

// matchPorts is `th sport|dport LO-HI` (a single port when lo == hi). The
// caller matches the protocol first: the transport header has ports only for
// TCP and UDP.
func matchPorts(lo, hi uint16, dst bool) []expr.Any {
	offset := uint32(0)
	if dst {
		offset = 2
	}
	out := []expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2}}
	if lo == hi {
		return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: binaryutil.BigEndian.PutUint16(lo)})
	}
	return append(out, &expr.Range{Op: expr.CmpOpEq, Register: reg,
		FromData: binaryutil.BigEndian.PutUint16(lo), ToData: binaryutil.BigEndian.PutUint16(hi)})
}

// matchMark is `meta mark MARK`.
func matchMark(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(mark)},
	}
}

// matchHopLimit255 is `ip6 hoplimit 255`: a neighbour discovery message
// with it cannot have crossed a router (RFC 4861).
func matchHopLimit255() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{255}},
	}
}

// matchCtEstablished is `ct state established,related`.
func matchCtEstablished() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// matchICMPv6Type is `icmpv6 type TYPE`.
func matchICMPv6Type(typ byte) []expr.Any {
	out := matchL4proto(unix.IPPROTO_ICMPV6)
	return append(out,
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{typ}})
}

// setTCPMSSToRouteMTU is `tcp flags & (syn|rst) == syn tcp option maxseg
// size set rt mtu`. The kernel only ever lowers the MSS with it.
func setTCPMSSToRouteMTU() []expr.Any {
	const syn, rst = 0x02, 0x04
	out := matchL4proto(unix.IPPROTO_TCP)
	return append(out,
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 1, Mask: []byte{syn | rst}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{syn}},
		&expr.Rt{Register: reg, Key: expr.RtTCPMSS},
		// rt hands the MSS over in host byte order; the option is big-endian.
		&expr.Byteorder{SourceRegister: reg, DestRegister: reg, Op: expr.ByteorderHton, Len: 2, Size: 2},
		&expr.Exthdr{SourceRegister: reg, Type: 2 /* maxseg */, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
	)
}

func accept() expr.Any { return &expr.Verdict{Kind: expr.VerdictAccept} }
func drop() expr.Any   { return &expr.Verdict{Kind: expr.VerdictDrop} }
func jump(chain string) expr.Any {
	return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain}
}
func goTo(chain string) expr.Any {
	return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}
}

// rule concatenates expression fragments into one rule.
func rule(t *nftables.Table, c *nftables.Chain, parts ...[]expr.Any) *nftables.Rule {
	return &nftables.Rule{Table: t, Chain: c, Exprs: slices.Concat(parts...)}
}

// one wraps single expressions as a fragment.
func one(e ...expr.Any) []expr.Any { return e }

// commented tags a rule with a comment (`comment "..."` in nft), which is
// also how we find its counter again.
func commented(r *nftables.Rule, comment string) *nftables.Rule {
	r.UserData = userdata.AppendString(nil, userdata.TypeComment, comment)
	return r
}

// countersByComment sums the counters of the rules in chain by their comment.
func countersByComment(conn *nftables.Conn, t *nftables.Table, chain string) (map[string]Counter, error) {
	rules, err := conn.GetRules(t, &nftables.Chain{Name: chain, Table: t})
	if err != nil {
		return nil, fmt.Errorf("list rules of %s: %w", chain, err)
	}
	out := make(map[string]Counter)
	for _, r := range rules {
		comment, ok := userdata.GetString(r.UserData, userdata.TypeComment)
		if !ok {
			continue
		}
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				sum := out[comment]
				sum.Packets += c.Packets
				sum.Bytes += c.Bytes
				out[comment] = sum
			}
		}
	}
	return out, nil
}

// newNFTConn opens a lasting nftables connection in ns: every batch goes to
// that namespace's ruleset, whichever thread flushes it.
func newNFTConn(ns *boundNetNS) (*nftables.Conn, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns.handle)), nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return conn, nil
}

// deleteTable removes table if present; a missing table is not an error,
// so undoing twice is harmless.
func deleteTable(conn *nftables.Conn, t *nftables.Table) error {
	conn.DelTable(t)
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// hostPrefix is the prefix holding just a.
func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
