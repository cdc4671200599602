package tun

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

const (
	netstackNIC tcpip.NICID = 1

	// netstackBatch is how many queued packets one Read takes.
	netstackBatch = 32

	// netstackQueue is the stack's outbound queue. When the reader falls
	// behind, further packets are dropped (as a full qdisc would) and the
	// stack's TCP backs off; nothing inside the stack ever blocks on it.
	netstackQueue = 1024
)

// netstackDevice is the packet side of a gVisor stack. It talks to the
// stack's channel endpoint directly rather than through wireguard's
// tun/netstack, whose Close can panic ("send on closed channel") or hang
// while the stack is still sending (wireguard-go PRs #85, #134, still open).
type netstackDevice struct {
	stack *stack.Stack
	ep    *channel.Endpoint
	mtu   int

	ctx    context.Context // cancelled by Close; unblocks Read
	cancel context.CancelFunc

	mu     sync.RWMutex // held for reading while injecting; Close takes it to stop injection
	closed bool
	once   sync.Once
}

// CreateNetstack creates a userspace TCP/IP stack with the given local
// addresses (IPv4 and/or IPv6, no zones) and MTU. Its IP packets come out of
// the returned Device, and packets for it go in there. Net dials, listens
// and resolves names (through dns, over the tunnel) on the stack. No
// privileges are needed.
//
// gVisor drops inbound packets addressed to 127.0.0.0/8 ("martian"), so the
// tunnel cannot carry loopback traffic: Net refuses loopback destinations
// with ErrLoopback instead of letting a dial time out, and tests must use
// other addresses (e.g. the 192.0.2.0/24 documentation range).
func CreateNetstack(addrs, dns []netip.Addr, mtu int) (Device, *Net, error) {
	if err := validMTU(mtu); err != nil {
		return nil, nil, err
	}
	if len(addrs) == 0 {
		return nil, nil, errors.New("tun: netstack needs at least one local address")
	}

	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		// Traffic between the stack's own addresses stays inside it.
		HandleLocal: true,
	})
	dev, n, err := setUpNetstack(s, addrs, dns, mtu)
	if err != nil {
		s.Destroy()
		return nil, nil, fmt.Errorf("tun: netstack: %w", err)
	}
	return dev, n, nil
}

func setUpNetstack(s *stack.Stack, addrs, dns []netip.Addr, mtu int) (*netstackDevice, *Net, error) {
	// SACK is off by default in gVisor; a tunnel that reorders and loses
	// packets needs it. Receive-buffer moderation lets windows grow with
	// the path's bandwidth-delay product.
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return nil, nil, fmt.Errorf("enable SACK: %s", err)
	}
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &moderate); err != nil {
		return nil, nil, fmt.Errorf("enable receive buffer moderation: %s", err)
	}

	ep := channel.New(netstackQueue, uint32(mtu), "")
	if err := s.CreateNIC(netstackNIC, ep); err != nil {
		return nil, nil, fmt.Errorf("create NIC: %s", err)
	}
	n := &Net{stack: s, dns: dns}
	for _, a := range addrs {
		if !a.IsValid() || a.Zone() != "" {
			return nil, nil, fmt.Errorf("local address %v: not a plain IP address", a)
		}
		a = a.Unmap()
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
			n.hasV6 = true
		} else {
			n.hasV4 = true
		}
		pa := tcpip.ProtocolAddress{
			Protocol:          proto,
			AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix(),
		}
		if err := s.AddProtocolAddress(netstackNIC, pa, stack.AddressProperties{}); err != nil {
			return nil, nil, fmt.Errorf("add address %v: %s", a, err)
		}
	}
	// Everything not local leaves through the tunnel.
	if n.hasV4 {
		s.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: netstackNIC})
	}
	if n.hasV6 {
		s.AddRoute(tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: netstackNIC})
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &netstackDevice{stack: s, ep: ep, mtu: mtu, ctx: ctx, cancel: cancel}, n, nil
}

func (d *netstackDevice) Read(bufs [][]byte, sizes []int) (int, error) {
	if err := checkReadBuffers(bufs, sizes, netstackBatch); err != nil {
		return 0, err
	}
	pkt := d.ep.ReadContext(d.ctx)
	if pkt == nil {
		return 0, fmt.Errorf("tun: read netstack: %w", os.ErrClosed)
	}
	n := 0
	for pkt != nil {
		sizes[n] = copyPacket(bufs[n], pkt)
		pkt.DecRef()
		n++
		if n == len(bufs) {
			break
		}
		pkt = d.ep.Read()
	}
	return n, nil
}

// copyPacket copies pkt's bytes into dst (at least MaxPacketSize long,
// which bounds any packet the stack sends at its MTU).
func copyPacket(dst []byte, pkt *stack.PacketBuffer) int {
	views, skip := pkt.AsViewList()
	n := 0
	for v := views.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		n += copy(dst[n:], b[skip:])
		skip = 0
	}
	return n
}

func (d *netstackDevice) Write(pkts [][]byte) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return fmt.Errorf("tun: write netstack: %w", os.ErrClosed)
	}
	var errs error
	for _, p := range pkts {
		var proto tcpip.NetworkProtocolNumber
		switch {
		case len(p) == 0 || len(p) > MaxPacketSize:
			errs = errors.Join(errs, fmt.Errorf("packet of %d bytes", len(p)))
			continue
		case p[0]>>4 == 4:
			proto = ipv4.ProtocolNumber
		case p[0]>>4 == 6:
			proto = ipv6.ProtocolNumber
		default:
			errs = errors.Join(errs, fmt.Errorf("packet with IP version %d", p[0]>>4))
			continue
		}
		// MakeWithData copies p; the stack validates the rest and counts
		// what it drops in its stats.
		pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
		d.ep.InjectInbound(proto, pkb)
		pkb.DecRef()
	}
	if errs != nil {
		return fmt.Errorf("tun: write netstack: %w", errs)
	}
	return nil
}

func (d *netstackDevice) BatchSize() int { return netstackBatch }
func (d *netstackDevice) MTU() int       { return d.mtu }
func (d *netstackDevice) Name() string   { return "netstack" }

// Close aborts every connection on the stack and waits for its goroutines.
// Nothing in the stack blocks on the device, so this cannot hang.
func (d *netstackDevice) Close() error {
	d.once.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		d.cancel()
		d.stack.Close()
		d.stack.Wait()
		d.ep.Close()
	})
	return nil
}
