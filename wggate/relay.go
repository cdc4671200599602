package wggate

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"

	"github.com/nym-go/nym/anonymity"
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
	trace      *tracer // nil: not tracing

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
	gso  atomic.Bool  // sends runs of equal-size datagrams as one (UDP_SEGMENT)
	gro  bool         // reads bursts coalesced (UDP_GRO)
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
		if sb.f != f || len(sb.pay) == relayBatch {
			r.send(sb)
			sb.f = f
		}
		sb.pay = append(sb.pay, payload)
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

// relayBatch is the most datagrams one send to an exit moves (and what
// the device hands the relay at most: its bind's batch). UDP GSO takes at
// most 64 segments per message; a batch of 1420-byte datagrams needs two.
const relayBatch = 128

// sendBatch is datagrams of one flow waiting for one sendmmsg. The
// device's receive goroutines (one per peer) each take one from the pool.
type sendBatch struct {
	f   *flow
	pay [][]byte // the datagrams, in order; they alias the device's buffers
	gsoBatch
}

var sendBatches = sync.Pool{New: func() any {
	return &sendBatch{pay: make([][]byte, 0, relayBatch), gsoBatch: newGSOBatch(relayBatch)}
}}

// send writes sb's datagrams to its flow's exit and empties it.
func (r *relay) send(sb *sendBatch) {
	if len(sb.pay) == 0 {
		return
	}
	f, pay := sb.f, sb.pay
	f.last.Store(time.Now().UnixNano())
	if r.trace != nil {
		for _, p := range pay {
			r.trace.relayed(f.key.exit, p, anonymity.Out)
		}
	}
	gso := f.gso.Load()
	sent, bytes, err := sb.write(f.bc, pay, nil, &f.gso)
	if gso && !f.gso.Load() {
		r.log.Debug("wireguard relay: UDP GSO refused; sending datagrams singly", "exit", f.key.exit)
	}
	if lost := len(pay) - sent; lost > 0 {
		// Refused (an ICMP error the socket held) or failed.
		r.m.dropped.WithLabelValues(dropSendError).Add(float64(lost))
		r.log.Debug("wireguard relay: sending to exit", "exit", f.key.exit, "lost", lost, "err", err)
	}
	r.toExitPkts.Add(float64(sent))
	r.toExitBytes.Add(float64(bytes))
	clear(sb.pay)
	sb.f, sb.pay = nil, sb.pay[:0]
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
	setSocketBuffers(conn, relaySocketBuffer, r.log)
	f := &flow{key: key, peer: pk, conn: conn, bc: newBatchConn(conn, key.exit.Addr().Is6())}
	gso, gro := udpOffload(conn)
	f.gso.Store(gso)
	f.gro = gro
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
// 1420 the client's outer tunnel carries unfragmented.
const relayReadSize = 4 << 10

// Each flow's reader holds relayReadBatch buffers of relayReadSize (one
// byte more tells a full buffer, perhaps cut, from a datagram of the
// largest size taken), 128 KiB; or, with UDP GRO, groReadBatch buffers of
// 64 KiB, each a burst of up to 64 datagrams (the exit's wireguard-go
// sends its batches with UDP GSO), 256 KiB.
const (
	relayReadBatch = 32
	groReadBatch   = 4
	groReadSize    = 1 << 16
)

// fromExit writes the exit's datagrams on f back into the client's tunnel
// until the socket closes; one recvmmsg reads up to relayReadBatch of
// them, or groReadBatch bursts.
func (r *relay) fromExit(f *flow) {
	defer r.wg.Done()
	nmsgs, size := relayReadBatch, relayReadSize+1
	if f.gro {
		nmsgs, size = groReadBatch, groReadSize
	}
	msgs := make([]ipv4.Message, nmsgs)
	backing := make([]byte, nmsgs*size)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{backing[i*size : (i+1)*size]}
		if f.gro {
			msgs[i].OOB = make([]byte, gsoOOBSize)
		}
	}
	var pkts []*[]byte
	hdr := udpHeaderLen(f.key.exit.Addr())
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
		pkts = pkts[:0]
		for _, m := range msgs[:n] {
			data, seg := m.Buffers[0][:m.N], m.N
			if f.gro {
				if s := groSize(m.OOB[:m.NN]); s > 0 {
					seg = s
				}
			}
			if seg > relayReadSize || m.Flags&syscall.MSG_TRUNC != 0 {
				r.m.dropped.WithLabelValues(dropTooBig).Inc()
				continue
			}
			for d := range segments(data, seg) {
				if r.trace != nil {
					r.trace.relayed(f.key.exit, d, anonymity.In)
				}
				bp := bufPool.Get().(*[]byte)
				*bp = appendUDP((*bp)[:0], f.key.exit, f.key.client, d)
				pkts = append(pkts, bp)
			}
		}
		// One hand-over per device batch: the queue's bound is in
		// packets, and a burst is up to 256.
		for len(pkts) > 0 {
			chunk := pkts[:min(len(pkts), chanTUNBatch)]
			pkts = pkts[len(chunk):]
			bytes := 0 // counted first: once injected, the buffers are the device's
			for _, bp := range chunk {
				bytes += len(*bp) - hdr
			}
			if !r.tun.InjectBatch(slices.Clone(chunk)) {
				for _, bp := range chunk {
					bufPool.Put(bp)
				}
				r.m.dropped.WithLabelValues(dropQueueFull).Add(float64(len(chunk)))
				continue
			}
			r.fromExitPkts.Add(float64(len(chunk)))
			r.fromExitBytes.Add(float64(bytes))
		}
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
