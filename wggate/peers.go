package wggate

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// errPoolFull means every client address is taken.
var errPoolFull = errors.New("wggate: no client address left")

// errSourceFull means the client's source address holds its share of peers.
var errSourceFull = errors.New("wggate: too many peers from this address")

// addrPool hands out client addresses: the same host offset in the IPv4
// and (if any) the IPv6 range, offset 1 being the gateway's own. A released
// offset is handed out again, lowest first.
type addrPool struct {
	v4, v6 netip.Prefix
	size   uint64 // offsets 2..size-1 are clients'
	next   uint64
	free   []uint64 // sorted
}

func newAddrPool(v4, v6 netip.Prefix) (*addrPool, error) {
	if !v4.IsValid() || !v4.Addr().Is4() || v4.Bits() > 30 {
		return nil, fmt.Errorf("wggate: client range %s: want an IPv4 prefix of /30 or wider", v4)
	}
	size := uint64(1) << (32 - v4.Bits())
	if v6.IsValid() {
		if !v6.Addr().Is6() || v6.Addr().Is4In6() || v6.Bits() < 64 || v6.Bits() > 126 {
			return nil, fmt.Errorf("wggate: client range %s: want an IPv6 prefix between /64 and /126", v6)
		}
		if s6 := uint64(1) << min(63, 128-v6.Bits()); s6 < size {
			size = s6
		}
	}
	return &addrPool{v4: v4.Masked(), v6: v6.Masked(), size: size - 1, next: 2}, nil // the last v4 address is broadcast
}

// gateway returns the gateway's own addresses (offset 1).
func (p *addrPool) gateway() (netip.Addr, netip.Addr) { return p.at(1) }

func (p *addrPool) at(off uint64) (v4, v6 netip.Addr) {
	v4 = addOffset(p.v4.Addr(), off)
	if p.v6.IsValid() {
		v6 = addOffset(p.v6.Addr(), off)
	}
	return v4, v6
}

func addOffset(a netip.Addr, off uint64) netip.Addr {
	b := a.AsSlice()
	n := new(big.Int).SetBytes(b)
	n.Add(n, new(big.Int).SetUint64(off))
	out := n.FillBytes(make([]byte, len(b)))
	r, _ := netip.AddrFromSlice(out)
	return r
}

func (p *addrPool) take() (uint64, error) {
	if len(p.free) > 0 {
		off := p.free[0]
		p.free = p.free[1:]
		return off, nil
	}
	if p.next >= p.size {
		return 0, errPoolFull
	}
	p.next++
	return p.next - 1, nil
}

func (p *addrPool) release(off uint64) {
	i, _ := slices.BinarySearch(p.free, off)
	p.free = slices.Insert(p.free, i, off)
}

// peer is one registered client.
type peer struct {
	src        netip.Prefix // the registering client's address (entry only)
	off        uint64
	v4, v6     netip.Addr
	registered time.Time
}

// peerTable holds a device's peers: their addresses, and when they last
// showed signs of life.
type peerTable struct {
	dev      *device.Device
	pool     *addrPool
	timeout  time.Duration
	onRemove func(peerKey, *peer)

	mu     sync.Mutex
	byKey  map[peerKey]*peer
	byAddr map[netip.Addr]peerKey
	bySrc  map[netip.Prefix]int
}

func newPeerTable(dev *device.Device, pool *addrPool, timeout time.Duration, onRemove func(peerKey, *peer)) *peerTable {
	return &peerTable{dev: dev, pool: pool, timeout: timeout, onRemove: onRemove,
		byKey: make(map[peerKey]*peer), byAddr: make(map[netip.Addr]peerKey), bySrc: make(map[netip.Prefix]int)}
}

// add registers a peer, or renews one already registered (same addresses,
// the new PSK), and returns its addresses. A valid src (the registering
// client's address) may hold at most maxPerSrc peers.
func (t *peerTable) add(pk peerKey, psk [32]byte, now time.Time, src netip.Prefix, maxPerSrc int) (*peer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.byKey[pk]
	fresh := p == nil
	if fresh && src.IsValid() && t.bySrc[src] >= maxPerSrc {
		return nil, errSourceFull
	}
	if fresh {
		off, err := t.pool.take()
		if err != nil {
			return nil, err
		}
		p = &peer{off: off}
		p.v4, p.v6 = t.pool.at(off)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "public_key=%s\npreshared_key=%s\nreplace_allowed_ips=true\nallowed_ip=%s\n",
		hex.EncodeToString(pk[:]), hex.EncodeToString(psk[:]), netip.PrefixFrom(p.v4, 32))
	if p.v6.IsValid() {
		fmt.Fprintf(&cfg, "allowed_ip=%s\n", netip.PrefixFrom(p.v6, 128))
	}
	if err := t.dev.IpcSet(cfg.String()); err != nil {
		if fresh {
			t.pool.release(p.off)
		}
		return nil, fmt.Errorf("wggate: adding peer: %w", err)
	}
	p.registered = now
	if fresh {
		p.src = src
		if src.IsValid() {
			t.bySrc[src]++
		}
		t.byKey[pk] = p
		t.byAddr[p.v4] = pk
		if p.v6.IsValid() {
			t.byAddr[p.v6] = pk
		}
	}
	return p, nil
}

// owner returns the peer a tunnel address belongs to.
func (t *peerTable) owner(a netip.Addr) (peerKey, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pk, ok := t.byAddr[a]
	return pk, ok
}

func (t *peerTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey)
}

// expire removes the peers without a handshake (or, never having had one,
// registered) in the last timeout, and returns how many.
func (t *peerTable) expire(now time.Time) (int, error) {
	stats, err := t.stats()
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	var gone []peerKey
	for pk, p := range t.byKey {
		seen := p.registered
		if hs := stats[pk].handshake; hs.After(seen) {
			seen = hs
		}
		if now.Sub(seen) >= t.timeout {
			gone = append(gone, pk)
		}
	}
	t.mu.Unlock()
	for _, pk := range gone {
		t.remove(pk)
	}
	return len(gone), nil
}

// stats reads the device's peers: last handshakes and byte counters.
func (t *peerTable) stats() (map[peerKey]peerStat, error) {
	var out bytes.Buffer
	if err := t.dev.IpcGetOperation(&out); err != nil {
		return nil, fmt.Errorf("wggate: reading peers: %w", err)
	}
	return peerStats(out.Bytes()), nil
}

// remove takes a peer off the device and frees its addresses.
func (t *peerTable) remove(pk peerKey) {
	t.mu.Lock()
	p := t.byKey[pk]
	if p == nil {
		t.mu.Unlock()
		return
	}
	// Off the device first: its addresses must route nowhere before they
	// are handed to someone else.
	t.dev.RemovePeer(device.NoisePublicKey(pk))
	delete(t.byKey, pk)
	if p.src.IsValid() {
		if t.bySrc[p.src]--; t.bySrc[p.src] <= 0 {
			delete(t.bySrc, p.src)
		}
	}
	delete(t.byAddr, p.v4)
	if p.v6.IsValid() {
		delete(t.byAddr, p.v6)
	}
	t.mu.Unlock()
	if t.onRemove != nil {
		t.onRemove(pk, p)
	}
	t.mu.Lock()
	t.pool.release(p.off)
	t.mu.Unlock()
}

// peerStat is what the device's UAPI dump says of one peer.
type peerStat struct {
	handshake time.Time // zero: none yet
	rx, tx    uint64    // bytes received from and sent to it
}

// peerStats reads each peer's last handshake and byte counters from the
// device's UAPI dump (public_key=… followed by its fields).
func peerStats(dump []byte) map[peerKey]peerStat {
	out := make(map[peerKey]peerStat)
	var cur peerKey
	var have bool
	var st peerStat
	var sec, nsec int64
	flush := func() {
		if !have {
			return
		}
		if sec != 0 || nsec != 0 {
			st.handshake = time.Unix(sec, nsec)
		}
		out[cur] = st
	}
	sc := bufio.NewScanner(bytes.NewReader(dump))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "public_key":
			flush()
			have, st, sec, nsec = false, peerStat{}, 0, 0
			if b, err := hex.DecodeString(v); err == nil && len(b) == 32 {
				cur, have = peerKey(b), true
			}
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			st.rx, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			st.tx, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	flush()
	return out
}
