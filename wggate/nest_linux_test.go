package wggate

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/nym-go/nym/tun/ippkt"
)

// This file is a minimal client for tests: two wireguard-go devices nested
// as a fast-mode client nests them (package wgnest is the real one). The
// inner device (to the exit) sends its datagrams through nestBind, which
// wraps each in IP/UDP from the client's outer tunnel address to the exit's
// endpoint and injects it into the outer device (to the entry); what the
// outer device decrypts comes back to nestBind as the inner device's
// received datagrams.

// nestBind is the inner device's conn.Bind.
type nestBind struct {
	outer *chanTUN
	src   netip.AddrPort // the client's outer tunnel address, a fixed port

	mu     sync.Mutex
	recv   chan nestDatagram
	closed bool
}

type nestDatagram struct {
	from    netip.AddrPort
	payload []byte
}

type nestEndpoint struct{ netip.AddrPort }

func (e nestEndpoint) ClearSrc()           {}
func (e nestEndpoint) SrcToString() string { return "" }
func (e nestEndpoint) DstToString() string { return e.AddrPort.String() }
func (e nestEndpoint) DstToBytes() []byte  { b, _ := e.AddrPort.MarshalBinary(); return b }
func (e nestEndpoint) DstIP() netip.Addr   { return e.Addr() }
func (e nestEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

func (b *nestBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recv, b.closed = make(chan nestDatagram, 1024), false
	ch := b.recv
	return []conn.ReceiveFunc{func(pkts [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		d, ok := <-ch
		if !ok {
			return 0, net.ErrClosed
		}
		sizes[0] = copy(pkts[0], d.payload)
		eps[0] = nestEndpoint{d.from}
		return 1, nil
	}}, b.src.Port(), nil
}

func (b *nestBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.recv != nil && !b.closed {
		close(b.recv)
		b.closed = true
	}
	return nil
}

func (b *nestBind) SetMark(uint32) error { return nil }
func (b *nestBind) BatchSize() int       { return 1 }

func (b *nestBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	return nestEndpoint{ap}, err
}

func (b *nestBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	dst := ep.(nestEndpoint).AddrPort
	for _, p := range bufs {
		bp := bufPool.Get().(*[]byte)
		*bp = appendUDP((*bp)[:0], b.src, dst, p)
		if !b.outer.Inject(bp) {
			bufPool.Put(bp)
		}
	}
	return nil
}

// fromOuter takes what the outer device decrypted: UDP from the exit.
func (b *nestBind) fromOuter(pkt []byte) {
	p, err := ippkt.Parse(pkt)
	if err != nil || p.Protocol != ippkt.ProtoUDP || !p.HasPorts || p.Fragment {
		return
	}
	d := nestDatagram{netip.AddrPortFrom(p.Src, p.SrcPort), append([]byte(nil), pkt[p.HeaderLen+8:p.TotalLen]...)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.recv == nil {
		return
	}
	select {
	case b.recv <- d:
	default:
	}
}

// peerConfig is the UAPI text of one peer.
func peerConfig(key, psk [32]byte, endpoint netip.AddrPort, allowed ...string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "public_key=%s\npreshared_key=%s\nendpoint=%s\npersistent_keepalive_interval=25\n",
		hex.EncodeToString(key[:]), hex.EncodeToString(psk[:]), endpoint)
	for _, a := range allowed {
		fmt.Fprintf(&s, "allowed_ip=%s\n", a)
	}
	return s.String()
}

func privateConfig(priv [32]byte) string {
	return "private_key=" + hex.EncodeToString(priv[:]) + "\n"
}

var _ = device.NewDevice
