package socks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxDatagram is the largest UDP payload plus SOCKS header we relay.
const maxDatagram = 64 << 10

// maxNameCache bounds the per-association cache of resolved names: a
// client sending to many names must not grow it without end.
const maxNameCache = 256

// readUDPHeader parses the RFC 1928 §7 header of a client datagram and
// returns the destination and the payload. FRAG ≠ 0 is refused: we do not
// reassemble, and the RFC lets a server without reassembly drop fragments.
func readUDPHeader(b []byte) (Addr, []byte, error) {
	if len(b) < 4 {
		return Addr{}, nil, errors.New("datagram shorter than a SOCKS header")
	}
	if b[2] != 0 {
		return Addr{}, nil, fmt.Errorf("fragment %d dropped", b[2])
	}
	r := bytes.NewReader(b[4:])
	dst, err := readAddr5(r, b[3])
	if err != nil {
		return Addr{}, nil, err
	}
	return dst, b[len(b)-r.Len():], nil
}

// association is one UDP ASSOCIATE: the client-facing relay socket on the
// host, the outbound socket on the Dialer, and who may use them.
type association struct {
	s     *Server
	d     Dialer
	relay *net.UDPConn   // client side, on the listener's address
	out   net.PacketConn // destination side, on the Dialer
	log   *slog.Logger

	clientIP  netip.Addr // the control connection's peer: nobody else may send
	fixedPort uint16     // the port the client announced, 0 if none

	mu     sync.Mutex
	client netip.AddrPort // the client's UDP address, once known
	names  map[string]netip.Addr
}

// associate serves a UDP ASSOCIATE request until the control connection
// closes (RFC 1928 §7: the association ends with it).
func (s *Server) associate(ctx context.Context, c net.Conn, br *bufio.Reader, d Dialer, req request5, log *slog.Logger) error {
	local, lok := c.LocalAddr().(*net.TCPAddr)
	peer, pok := c.RemoteAddr().(*net.TCPAddr)
	if !lok || !pok {
		return s.fail5(c, ReplyGeneralFailure, errors.New("UDP ASSOCIATE needs a TCP control connection"))
	}
	// Listen on the address the client reached us on: a loopback listener
	// gives a loopback relay, never one on every interface.
	relay, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.IP, Zone: local.Zone})
	if err != nil {
		return s.fail5(c, ReplyGeneralFailure, fmt.Errorf("listen relay: %w", err))
	}
	defer relay.Close()
	out, err := d.ListenPacket(ctx, "udp")
	if err != nil {
		return s.fail5(c, replyFor(err), fmt.Errorf("listen outbound: %w", err))
	}
	defer out.Close()

	a := &association{
		s: s, d: d, relay: relay, out: out, log: log,
		clientIP:  peer.AddrPort().Addr().Unmap(),
		fixedPort: req.Dst.Port,
		names:     map[string]netip.Addr{},
	}
	reply, err := reply5(ReplySucceeded, addrFromAddrPort(relay.LocalAddr().(*net.UDPAddr).AddrPort()))
	if err == nil {
		_, err = c.Write(reply)
	}
	if err != nil {
		return fmt.Errorf("write UDP ASSOCIATE reply: %w", err)
	}
	s.stats.associations.Add(1)
	log.Debug("socks: UDP association", "relay", relay.LocalAddr().String())
	c.SetDeadline(time.Time{})

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.fromClient(ctx) }()
	go func() { defer wg.Done(); a.toClient() }()
	// The control connection carries nothing more; its end (EOF, error, or
	// Serve closing it) ends the association.
	io.Copy(io.Discard, br)
	relay.Close()
	out.Close()
	wg.Wait()
	return nil
}

// fromClient relays the client's datagrams to their destinations.
func (a *association) fromClient(ctx context.Context) {
	buf := make([]byte, maxDatagram)
	for {
		n, src, err := a.relay.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed: the association is over
		}
		if !a.accept(src) {
			a.drop("datagram from a stranger", "src", src.String())
			continue
		}
		dst, payload, err := readUDPHeader(buf[:n])
		if err != nil {
			a.drop("bad datagram", "err", err)
			continue
		}
		ip, err := a.resolve(ctx, dst)
		if err != nil {
			a.drop("unresolvable destination", "err", err)
			continue
		}
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, dst.Port))
		if _, err := a.out.WriteTo(payload, to); err != nil {
			a.drop("send failed", "err", err)
			continue
		}
		a.s.stats.bytesUp.Add(uint64(len(payload)))
	}
}

// accept reports whether src may use the relay: the control connection's
// IP, at the announced port if any; the first such packet fixes the port.
func (a *association) accept(src netip.AddrPort) bool {
	if src.Addr().Unmap() != a.clientIP {
		return false
	}
	if a.fixedPort != 0 && src.Port() != a.fixedPort {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.client.IsValid() {
		a.client = src
	}
	return a.client == src
}

func (a *association) clientAddr() netip.AddrPort {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.client
}

// resolve looks dst up through the Dialer, with a small cache so a stream
// of datagrams to one name costs one lookup.
func (a *association) resolve(ctx context.Context, dst Addr) (netip.Addr, error) {
	if dst.Name == "" {
		return dst.IP.Unmap(), nil
	}
	a.mu.Lock()
	ip, ok := a.names[dst.Name]
	a.mu.Unlock()
	if ok {
		return ip, nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.s.dialTimeout())
	defer cancel()
	ips, err := resolve(ctx, a.d, dst)
	if err != nil {
		return netip.Addr{}, err
	}
	a.mu.Lock()
	if len(a.names) >= maxNameCache {
		clear(a.names)
	}
	a.names[dst.Name] = ips[0]
	a.mu.Unlock()
	return ips[0], nil
}

// toClient relays datagrams from destinations back to the client, each
// with a header naming its source.
func (a *association) toClient() {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := a.out.ReadFrom(buf)
		if err != nil {
			return
		}
		client := a.clientAddr()
		src := addrOf(from)
		if !client.IsValid() || !src.IP.IsValid() {
			a.drop("datagram before the client spoke, or from an unknown address", "from", from.String())
			continue
		}
		pkt, err := appendAddr5([]byte{0, 0, 0}, src)
		if err != nil {
			continue
		}
		pkt = append(pkt, buf[:n]...)
		if _, err := a.relay.WriteToUDPAddrPort(pkt, client); err != nil {
			a.drop("send to client failed", "err", err)
			continue
		}
		a.s.stats.bytesDown.Add(uint64(n))
	}
}

func (a *association) drop(why string, args ...any) {
	a.s.stats.udpDropped.Add(1)
	a.log.Debug("socks: UDP datagram dropped: "+why, args...)
}
