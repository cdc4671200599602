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
	"golang.org/x/net/ipv4"

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
	bc   batchConn    // conn, many datagrams per syscall
	last atomic.Int64 // unix nanos of the last datagram either way
}

// bufPool holds the packets fromExit hands the device: a datagram of up to
// relayReadSize behind IPv6 and UDP headers. (Buffers of 64 KiB cost a
// 64 KiB clear each time the pool ran dry, which under a download was
// often: a tenth of the entry's CPU.)
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, relayReadSize+48); return &b }}

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

// fromClient handles one packet a client's peer sent; see fromClients.
func (r *relay) fromClient(pkt []byte) { r.fromClients([][]byte{pkt}, 0) }

// fromClients handles the packets a client's peer sent (decrypted by the
// device, their sources already checked against the peer's addresses),
// each at offset in its buffer. It runs on the device's receive goroutines,
// one batch of up to device.BatchSize per call; the buffers are only valid
// during it. Consecutive datagrams of one flow (a TCP download's ACKs, an
// upload's segments) leave in one sendmmsg.
func (r *relay) fromClients(bufs [][]byte, offset int) {
	sb := sendBatches.Get().(*sendBatch)
	defer sendBatches.Put(sb)
	for _, b := range bufs {
		f, payload := r.accept(b[offset:], sb.f)
		if f == nil {
			continue
		}
		if sb.f != f || sb.n == len(sb.msgs) {
			r.send(sb)
			sb.f = f
		}
		sb.msgs[sb.n].Buffers[0] = payload
		sb.n++
	}
	r.send(sb)
}

// accept filters one packet: its flow and the UDP payload for the exit,
// or nil (counted as dropped). A packet of last's flow (most of a batch)
// skips the flow table and its lock.
func (r *relay) accept(pkt []byte, last *flow) (*flow, []byte) {
	p, err := ippkt.Parse(pkt)
	switch {
	case err != nil:
		r.m.dropped.WithLabelValues(dropMalformed).Inc()
		return nil, nil
	case p.Protocol != ippkt.ProtoUDP:
		r.m.dropped.WithLabelValues(dropNotUDP).Inc()
		return nil, nil
	case p.Fragment || !p.HasPorts:
		r.m.dropped.WithLabelValues(dropFragment).Inc()
		return nil, nil
	}
	key := flowKey{netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort)}
	payload := pkt[p.HeaderLen+8 : p.TotalLen]
	if last != nil && last.key == key {
		return last, payload
	}
	if !(*r.exits.Load())[key.exit] {
		r.m.dropped.WithLabelValues(dropNotExit).Inc()
		return nil, nil
	}
	f, reason := r.flow(key)
	if f == nil {
		r.m.dropped.WithLabelValues(reason).Inc()
		return nil, nil
	}
	return f, payload
}

// relayBatch is the most datagrams one sendmmsg or recvmmsg moves: the
// channel tun's batch (the device hands its receive side up to the bind's
// 128, sent in pieces).
const relayBatch = 32

// sendBatch is datagrams of one flow waiting for one sendmmsg. The
// device's receive goroutines (one per peer) each take one from the pool.
type sendBatch struct {
	f    *flow
	msgs []ipv4.Message
	n    int
}

var sendBatches = sync.Pool{New: func() any {
	sb := &sendBatch{msgs: make([]ipv4.Message, relayBatch)}
	for i := range sb.msgs {
		sb.msgs[i].Buffers = make([][]byte, 1)
	}
	return sb
}}

// send writes sb's datagrams to its flow's exit and empties it.
func (r *relay) send(sb *sendBatch) {
	if sb.n == 0 {
		return
	}
	f, msgs := sb.f, sb.msgs[:sb.n]
	f.last.Store(time.Now().UnixNano())
	for len(msgs) > 0 {
		n, err := f.bc.WriteBatch(msgs, 0)
		if err != nil {
			// Refused (an ICMP error the socket held) or failed: the
			// first datagram is lost, as a single send would have been;
			// the rest get their own try.
			r.m.dropped.WithLabelValues(dropSendError).Inc()
			n = 1
		} else {
			bytes := 0
			for _, m := range msgs[:n] {
				bytes += len(m.Buffers[0])
			}
			r.toExitPkts.Add(float64(n))
			r.toExitBytes.Add(float64(bytes))
		}
		msgs = msgs[n:]
	}
	for i := range sb.msgs[:sb.n] {
		sb.msgs[i].Buffers[0] = nil
	}
	sb.f, sb.n = nil, 0
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
	setSocketBuffers(conn, r.log)
	f := &flow{key: key, peer: pk, conn: conn, bc: newBatchConn(conn, key.exit.Addr().Is6())}
	f.last.Store(time.Now().UnixNano())
	r.flows[key] = f
	r.perPeer[pk]++
	r.m.flows.Set(float64(len(r.flows)))
	r.wg.Add(1)
	go r.fromExit(f)
	return f, ""
}

// relayReadSize is the largest datagram from an exit the relay takes: a
// WireGuard message of an exit whose MTU is up to 4 KiB, far past the
// 1420 the client's outer tunnel carries unfragmented. Each flow's reader
// holds relayBatch of these (128 KiB).
const relayReadSize = 4 << 10

// fromExit writes the exit's datagrams on f back into the client's tunnel
// until the socket closes; one recvmmsg reads up to relayBatch of them.
func (r *relay) fromExit(f *flow) {
	defer r.wg.Done()
	msgs := make([]ipv4.Message, relayBatch)
	backing := make([]byte, relayBatch*(relayReadSize+1))
	for i := range msgs {
		// One byte more than relayReadSize tells a full buffer (perhaps
		// cut) from a datagram of the largest size taken.
		msgs[i].Buffers = [][]byte{backing[i*(relayReadSize+1) : (i+1)*(relayReadSize+1)]}
	}
	for {
		n, err := f.bc.ReadBatch(msgs, 0)
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
		pkts, bytes := make([]*[]byte, 0, n), 0
		for _, m := range msgs[:n] {
			if m.N > relayReadSize {
				r.m.dropped.WithLabelValues(dropTooBig).Inc()
				continue
			}
			bp := bufPool.Get().(*[]byte)
			*bp = appendUDP((*bp)[:0], f.key.exit, f.key.client, m.Buffers[0][:m.N])
			pkts = append(pkts, bp)
			bytes += m.N
		}
		if len(pkts) == 0 {
			continue
		}
		if !r.tun.InjectBatch(pkts) {
			for _, bp := range pkts {
				bufPool.Put(bp)
			}
			r.m.dropped.WithLabelValues(dropQueueFull).Add(float64(len(pkts)))
			continue
		}
		r.fromExitPkts.Add(float64(len(pkts)))
		r.fromExitBytes.Add(float64(bytes))
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
