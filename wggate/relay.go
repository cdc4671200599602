package wggate

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/tun/ippkt"
)

// relay is the entry's forwarding: a client's peer may send, inside the
// outer tunnel, only UDP to a current exit's WireGuard endpoint. Each
// (client flow, exit) gets a UDP socket of the entry's own, so the exit's
// replies map back to the client without the entry parsing WireGuard; they
// go back into the device as IP/UDP from the exit's endpoint to the client's
// tunnel address.
type relay struct {
	ctx        context.Context
	tun        *chanTUN
	owner      func(src netip.Addr) (peerKey, bool)
	timeout    time.Duration
	maxPerPeer int
	m          *metrics
	log        *slog.Logger
	dial       func(exit netip.AddrPort) (*net.UDPConn, error)

	exits atomic.Pointer[map[netip.AddrPort]bool]

	// The per-packet counters, resolved once.
	toExitPkts, toExitBytes, fromExitPkts, fromExitBytes prometheus.Counter

	mu      sync.Mutex
	flows   map[flowKey]*flow
	perPeer map[peerKey]int
	wg      sync.WaitGroup
}

type peerKey [32]byte

// flowKey is one client flow to one exit: the client's outer tunnel
// address and port, and the exit's WireGuard endpoint.
type flowKey struct{ client, exit netip.AddrPort }

type flow struct {
	key  flowKey
	peer peerKey
	conn *net.UDPConn
	last atomic.Int64 // unix nanos of the last datagram either way
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 65535+60); return &b }}

func newRelay(ctx context.Context, tun *chanTUN, owner func(netip.Addr) (peerKey, bool), timeout time.Duration, maxPerPeer int, m *metrics, log *slog.Logger) *relay {
	r := &relay{
		ctx: ctx, tun: tun, owner: owner, timeout: timeout, maxPerPeer: maxPerPeer, m: m, log: log,
		flows:   make(map[flowKey]*flow),
		perPeer: make(map[peerKey]int),
		dial: func(exit netip.AddrPort) (*net.UDPConn, error) {
			return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(exit))
		},
	}
	r.toExitPkts, r.toExitBytes = m.relayedPkts.WithLabelValues("to_exit"), m.relayedBytes.WithLabelValues("to_exit")
	r.fromExitPkts, r.fromExitBytes = m.relayedPkts.WithLabelValues("from_exit"), m.relayedBytes.WithLabelValues("from_exit")
	empty := map[netip.AddrPort]bool{}
	r.exits.Store(&empty)
	return r
}

// SetExits replaces the set of endpoints clients may send to.
func (r *relay) SetExits(eps []netip.AddrPort) {
	m := make(map[netip.AddrPort]bool, len(eps))
	for _, ep := range eps {
		m[netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())] = true
	}
	r.exits.Store(&m)
}

// fromClient handles one packet a client's peer sent (decrypted by the
// device, its source already checked against the peer's addresses). It
// runs on the device's receive goroutines; pkt is only valid during it.
func (r *relay) fromClient(pkt []byte) {
	p, err := ippkt.Parse(pkt)
	switch {
	case err != nil:
		r.m.dropped.WithLabelValues(dropMalformed).Inc()
		return
	case p.Protocol != ippkt.ProtoUDP:
		r.m.dropped.WithLabelValues(dropNotUDP).Inc()
		return
	case p.Fragment || !p.HasPorts:
		r.m.dropped.WithLabelValues(dropFragment).Inc()
		return
	}
	key := flowKey{netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort)}
	if !(*r.exits.Load())[key.exit] {
		r.m.dropped.WithLabelValues(dropNotExit).Inc()
		return
	}
	f, reason := r.flow(key)
	if f == nil {
		r.m.dropped.WithLabelValues(reason).Inc()
		return
	}
	payload := pkt[p.HeaderLen+8 : p.TotalLen]
	f.last.Store(time.Now().UnixNano())
	if _, err := f.conn.Write(payload); err != nil {
		r.m.dropped.WithLabelValues(dropSendError).Inc()
		return
	}
	r.toExitPkts.Inc()
	r.toExitBytes.Add(float64(len(payload)))
}

// flow returns the socket of key, opening one if there is none.
func (r *relay) flow(key flowKey) (*flow, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.flows[key]; f != nil {
		return f, ""
	}
	pk, ok := r.owner(key.client.Addr())
	if !ok {
		return nil, dropNoPeer
	}
	if r.perPeer[pk] >= r.maxPerPeer {
		return nil, dropFlowLimit
	}
	if r.ctx.Err() != nil {
		return nil, dropSendError
	}
	conn, err := r.dial(key.exit)
	if err != nil {
		r.log.Warn("wireguard relay: socket to exit", "exit", key.exit, "err", err)
		return nil, dropSendError
	}
	f := &flow{key: key, peer: pk, conn: conn}
	f.last.Store(time.Now().UnixNano())
	r.flows[key] = f
	r.perPeer[pk]++
	r.m.flows.Set(float64(len(r.flows)))
	r.wg.Add(1)
	go r.fromExit(f)
	return f, ""
}

// fromExit writes the exit's datagrams on f back into the client's tunnel
// until the socket closes.
func (r *relay) fromExit(f *flow) {
	defer r.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, err := f.conn.Read(buf)
		if errors.Is(err, syscall.ECONNREFUSED) {
			// An ICMP error from the exit's host (its WireGuard restarting):
			// the flow stays, like a WireGuard socket would.
			continue
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Debug("wireguard relay: reading from exit", "exit", f.key.exit, "err", err)
				r.closeFlow(f)
			}
			return
		}
		f.last.Store(time.Now().UnixNano())
		bp := bufPool.Get().(*[]byte)
		*bp = appendUDP((*bp)[:0], f.key.exit, f.key.client, buf[:n])
		if !r.tun.Inject(bp) {
			bufPool.Put(bp)
			r.m.dropped.WithLabelValues(dropQueueFull).Inc()
			continue
		}
		r.fromExitPkts.Inc()
		r.fromExitBytes.Add(float64(n))
	}
}

func (r *relay) closeFlow(f *flow) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeFlowLocked(f)
}

func (r *relay) closeFlowLocked(f *flow) {
	if r.flows[f.key] != f {
		return
	}
	delete(r.flows, f.key)
	if r.perPeer[f.peer]--; r.perPeer[f.peer] <= 0 {
		delete(r.perPeer, f.peer)
	}
	r.m.flows.Set(float64(len(r.flows)))
	f.conn.Close()
}

// closePeer closes every socket of a removed peer.
func (r *relay) closePeer(pk peerKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.flows {
		if f.peer == pk {
			r.closeFlowLocked(f)
		}
	}
}

// expire closes the sockets idle since before cutoff.
func (r *relay) expire(cutoff time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.flows {
		if f.last.Load() < cutoff.UnixNano() {
			r.closeFlowLocked(f)
		}
	}
}

// Close closes every socket and waits for their readers.
func (r *relay) Close() {
	r.mu.Lock()
	for _, f := range r.flows {
		r.closeFlowLocked(f)
	}
	r.mu.Unlock()
	r.wg.Wait()
}
