package main

// End-to-end tests of nymvpn's fast mode (two hops of nested WireGuard)
// through the local network: root only, not with -short, as the other e2e
// tests.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nym-go/nym/internal/netnstest"
)

// wgGateway is a gateway of the topology as fast mode sees it.
type wgGateway struct {
	Identity string `json:"identity"`
	WGAddr   string `json:"wg_addr"`
}

// wgGateways reads the entries' and exits' WireGuard addresses from the
// directory, as the client sees it.
func (n *e2eNet) wgGateways() (entries, exits []wgGateway) {
	n.t.Helper()
	out := n.must("client", "curl", "-sf", "--max-time", "10", e2eDirURL+"/api/v1/topology")
	var doc struct {
		Topology struct {
			Entry, Exit []wgGateway
		} `json:"topology"` // the consensus document
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		n.t.Fatalf("topology: %v", err)
	}
	top := doc.Topology
	for _, g := range top.Entry {
		if g.WGAddr != "" {
			entries = append(entries, g)
		}
	}
	for _, g := range top.Exit {
		if g.WGAddr != "" {
			exits = append(exits, g)
		}
	}
	if len(entries) == 0 || len(exits) == 0 {
		n.t.Fatalf("no gateway announces a WireGuard address (wg_addr): entries %v, exits %v", top.Entry, top.Exit)
	}
	return entries, exits
}

type fastStatus struct {
	e2eStatus
	Mode  string `json:"mode"`
	Entry string `json:"entry"`
	Exit  string `json:"exit"`
}

func (n *e2eNet) fastStatus() (fastStatus, error) {
	var s fastStatus
	out, err := n.in("client", time.Minute, filepath.Join(n.bin, "nymvpn"), "--socket", n.vpnSock, "status", "--json")
	if err != nil {
		return s, fmt.Errorf("%v: %s", err, out)
	}
	err = json.Unmarshal([]byte(out), &s)
	return s, err
}

// capture records every frame on every interface of a namespace (AF_PACKET,
// all protocols) until stop; it is the test's tcpdump.
type capture struct {
	fd      int
	dropped uint32 // frames the kernel dropped for want of buffer
	wg      sync.WaitGroup
	stop    atomic.Bool
	mu      sync.Mutex
	frames  [][]byte
}

func startCapture(t *testing.T, ns string) *capture {
	t.Helper()
	c := &capture{fd: -1}
	proto := int(htons(unix.ETH_P_ALL))
	if err := netnstest.DoNamed(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		c.fd = fd
		// A download comes in bursts faster than this reader on a busy
		// machine: a default buffer dropped half of 1 MiB's frames.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return err
		}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	}); err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture in %s: %v", ns, err)
	}
	c.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			// Once stopped, read what the socket still holds and no
			// more: the reader lags behind a burst on a busy machine,
			// and frames left in the buffer are neither seen nor
			// counted as dropped (a 1 MiB download showed 712 KB).
			stopping, flags := c.stop.Load(), 0
			if stopping {
				flags = unix.MSG_DONTWAIT
			}
			n, from, err := unix.Recvfrom(c.fd, buf, flags)
			if err != nil || n <= 0 {
				if stopping {
					return
				}
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING && ll.Ifindex == 1 {
				continue // loopback: each frame is seen twice there
			}
			c.mu.Lock()
			c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
			c.mu.Unlock()
		}
	})
	t.Cleanup(c.close)
	return c
}

func (c *capture) close() {
	if c.stop.Swap(true) {
		return
	}
	c.wg.Wait()
	if st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		c.dropped = st.Drops
	}
	unix.Close(c.fd)
}

// packets stops the capture and returns the IP packets it saw (the frames'
// Ethernet headers removed; TUN frames have none).
func (c *capture) packets() [][]byte {
	c.close()
	var pkts [][]byte
	for _, f := range c.frames {
		switch {
		case len(f) > 14 && binary.BigEndian.Uint16(f[12:14]) == unix.ETH_P_IP && f[14]>>4 == 4,
			len(f) > 14 && binary.BigEndian.Uint16(f[12:14]) == unix.ETH_P_IPV6 && f[14]>>4 == 6:
			pkts = append(pkts, f[14:])
		case len(f) > 0 && (f[0]>>4 == 4 || f[0]>>4 == 6):
			pkts = append(pkts, f)
		}
	}
	return pkts
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ipHeader reads what the checks need from an IP packet: addresses, the
// transport protocol and the ports of TCP or UDP.
func ipHeader(p []byte) (src, dst netip.Addr, proto uint8, sport, dport uint16, ok bool) {
	var off int
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		src, dst, proto, off = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), p[9], int(p[0]&15)*4
	case len(p) >= 40 && p[0]>>4 == 6:
		src, dst, proto, off = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), p[6], 40
	default:
		return
	}
	if (proto == 6 || proto == 17) && len(p) >= off+4 {
		sport, dport = binary.BigEndian.Uint16(p[off:]), binary.BigEndian.Uint16(p[off+2:])
	}
	return src, dst, proto, sport, dport, true
}

const e2eClientLAN = "192.0.2.100"

// TestFastMode: nymvpn --mode fast through the local network: the exit's
// address seen by the internet, 1 MiB with its checksum, ICMP, DNS, IPv6,
// the exit policy's refusals, status naming the mode, disconnect restoring
// the host; and what each gateway learns: on the entry's side only UDP
// between the entry and the exit's WireGuard port, no inner address in
// clear, and nothing at the exit carrying the client's address.
func TestFastMode(t *testing.T) {
	n := upNet(t, 1)
	entries, exits := n.wgGateways()
	entryWG, exitWG := netip.MustParseAddrPort(entries[0].WGAddr), netip.MustParseAddrPort(exits[0].WGAddr)
	// The exit policy's targets: the exit host's own address, a private
	// range reachable from the exit, SMTP.
	n.startBackground("exit", "exit-http", filepath.Join(n.state, "log", "exit-http.log"),
		filepath.Join(n.bin, "nym-localnet"), "inet", "--http", e2eExit4+":80", "--dns", "")
	n.must("inet", "ip", "addr", "add", "172.16.5.1/32", "dev", "eth0")
	n.must("exit", "ip", "route", "add", "172.16.5.1/32", "via", e2eInet4)
	n.startBackground("inet", "inet-smtp", filepath.Join(n.state, "log", "inet-smtp.log"),
		filepath.Join(n.bin, "nym-localnet"), "inet", "--http", ":25", "--dns", "")
	for _, u := range []string{"http://" + e2eExit4 + "/", "http://172.16.5.1/", "http://" + e2eInet4 + ":25/"} {
		ok := false
		for i := 0; i < 50 && !ok; i++ {
			_, err := n.in("exit", 5*time.Second, "curl", "-sf", "--max-time", "2", u)
			if ok = err == nil; !ok {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if !ok {
			t.Fatalf("%s does not answer from the exit itself: the policy test would prove nothing", u)
		}
	}

	before := n.hostSnapshot()
	n.connect("--mode", "fast")
	st, err := n.fastStatus()
	if err != nil || st.Mode != "fast" || st.State != "connected" || st.Entry != entries[0].Identity || st.Exit != exits[0].Identity {
		t.Fatalf("status: %v %+v; want fast mode, connected through %s to %s", err, st, entries[0].Identity, exits[0].Identity)
	}

	t.Run("exit address and 1MiB; what the gateways see", func(t *testing.T) {
		entryCap, exitCap := startCapture(t, n.ns("entry")), startCapture(t, n.ns("exit"))
		page, err := n.in("client", time.Minute, "curl", "-sf", "--max-time", "30", "http://"+e2eInet4+"/")
		if err != nil || !strings.Contains(page, "you are "+e2eExit4+":") {
			t.Errorf("the server did not see the exit's address %s: %v %q", e2eExit4, err, page)
		}
		start := time.Now()
		out, err := n.in("client", 3*time.Minute, "sh", "-c", "curl -sf --max-time 120 http://"+e2eInet4+"/1MiB | sha256sum")
		if got := strings.Fields(out + " x")[0]; err != nil || got != wantBlobSHA256 {
			t.Errorf("1MiB through the tunnel: sha256 %q (%v), want %s", got, err, wantBlobSHA256)
		} else {
			t.Logf("1 MiB in fast mode in %v, sha256 ok", time.Since(start).Round(time.Millisecond))
		}

		// The entry: between it and the exit only UDP to or from the
		// exit's WireGuard port, and no inner address anywhere in clear.
		inner := [][]byte{netip.MustParseAddr(e2eInet4).AsSlice(), netip.MustParseAddr(e2eInet6).AsSlice()}
		// Bytes, not packets: with UDP segmentation offload a capture
		// sees super-datagrams of many segments.
		var udp, udpBytes, other, clear int
		for _, p := range entryCap.packets() {
			for _, a := range inner {
				if bytes.Contains(p, a) {
					clear++
				}
			}
			src, dst, proto, sport, dport, ok := ipHeader(p)
			if !ok {
				continue
			}
			if (src == entryWG.Addr() && dst == exitWG.Addr()) || (src == exitWG.Addr() && dst == entryWG.Addr()) {
				if proto == 17 && (sport == exitWG.Port() || dport == exitWG.Port()) {
					udp++
					udpBytes += len(p)
				} else {
					other++
					t.Logf("entry<->exit: protocol %d ports %d -> %d", proto, sport, dport)
				}
			}
		}
		t.Logf("entry's capture: %d UDP packets (%d bytes) with the exit's WireGuard port, %d other packets between entry and exit, %d packets with an inner address; %d frames dropped by the capture", udp, udpBytes, other, clear, entryCap.dropped)
		want := 1 << 20
		if entryCap.dropped > 0 {
			want /= 2 // what the capture saw still holds no other packet
		}
		if udpBytes < want || other != 0 || clear != 0 {
			t.Errorf("the entry saw %d bytes of UDP with the exit (want >= %d), %d other packets to or from it, %d packets with the internet's address in clear", udpBytes, want, other, clear)
		}

		// The exit: no packet carries the client's address.
		client := netip.MustParseAddr(e2eClientLAN).AsSlice()
		var seen, withClient int
		for _, p := range exitCap.packets() {
			seen++
			if bytes.Contains(p, client) {
				withClient++
			}
		}
		if seen == 0 || withClient != 0 {
			t.Errorf("the exit's capture: %d of %d packets carry the client's address %s", withClient, seen, e2eClientLAN)
		}
		logb, _ := os.ReadFile(filepath.Join(n.state, "log", "nym-node-exit.log"))
		if len(logb) == 0 || bytes.Contains(logb, []byte(e2eClientLAN)) {
			t.Errorf("the exit's log (%d bytes) names the client's address %s", len(logb), e2eClientLAN)
		}
	})
	t.Run("ICMP echo", func(t *testing.T) {
		out, err := n.in("client", time.Minute, "ping", "-c", "5", "-W", "10", e2eInet4)
		if err != nil || !strings.Contains(out, " 0% packet loss") && !strings.Contains(out, "5 received") {
			t.Errorf("ping %s in fast mode: %v\n%s", e2eInet4, err, out)
		}
	})
	t.Run("DNS", func(t *testing.T) {
		out, err := n.in("client", time.Minute, "getent", "ahostsv4", "internet.test")
		if err != nil || !strings.Contains(out, e2eInet4) {
			t.Errorf("resolving internet.test through the tunnel: %v %q", err, out)
		}
		if out, err := n.in("client", time.Minute, "getent", "ahostsv4", "nosuch.test"); err == nil {
			t.Errorf("nosuch.test resolved: %q; the answers do not come from the internet's server", out)
		}
	})
	t.Run("IPv6", func(t *testing.T) {
		page, err := n.in("client", time.Minute, "curl", "-sf", "--max-time", "30", "http://["+e2eInet6+"]/")
		if err != nil || !strings.Contains(page, "you are ["+e2eExit6+"]:") {
			t.Errorf("http://[%s]/ in fast mode: %v %q; want the server to see [%s]", e2eInet6, err, page, e2eExit6)
		}
	})
	t.Run("exit policy", func(t *testing.T) {
		for _, tc := range []struct{ what, url string }{
			{"the exit host's own address", "http://" + e2eExit4 + "/"},
			{"a private range", "http://172.16.5.1/"},
			{"SMTP", "http://" + e2eInet4 + ":25/"},
		} {
			if out, err := n.in("client", 20*time.Second, "curl", "-s", "--max-time", "5", tc.url); err == nil {
				t.Errorf("%s: %s answered through the fast tunnel: %q", tc.what, tc.url, out)
			}
		}
	})
	t.Run("daemon crash: kill switch kept, the rest restored, connect again", func(t *testing.T) {
		var pid int
		var pidNS string
		pidb, err := os.ReadFile(filepath.Join(n.state, "pids", "nymvpn"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Sscan(string(pidb), &pid, &pidNS)
		if err := syscallKill(pid); err != nil {
			t.Fatalf("killing the daemon: %v", err)
		}
		// Gone: the TUN with it; the kill switch stays.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			if _, err := n.in("client", 10*time.Second, "ip", "link", "show", "nymvpn0"); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("nymvpn0 outlived the killed daemon")
			}
		}
		if !strings.Contains(n.must("client", "nft", "list", "tables"), "inet nymvpn") {
			t.Errorf("the kill switch went with the crashed daemon")
		}
		for _, u := range []string{"http://" + e2eInet4 + "/", "http://192.0.2.40:8080/"} {
			if out, err := n.in("client", 10*time.Second, "curl", "-s", "--max-time", "2", u); err == nil {
				t.Errorf("after the crash %s answered: %q", u, out)
			}
		}
		n.connect("--mode", "fast") // a new daemon: it restores the crashed one's routes and DNS first
		if st, err := n.fastStatus(); err != nil || st.Mode != "fast" || st.State != "connected" {
			t.Errorf("after the restart: %v %+v", err, st)
		}
	})
	t.Run("disconnect restores the host", func(t *testing.T) {
		if out, err := n.vpn("disconnect"); err != nil {
			t.Fatalf("nymvpn disconnect: %v\n%s", err, out)
		}
		after := n.hostSnapshot()
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s differs after disconnect:\n--- before\n%s--- after\n%s", k, v, after[k])
			}
		}
		if out, err := n.in("client", 10*time.Second, "curl", "-s", "--max-time", "3", "http://"+e2eInet4+"/"); err == nil {
			t.Errorf("after disconnect the client still reaches the internet: %q", out)
		}
	})
}

// fastLeakTable counts what leaves the client's uplink but the authorities'
// port, the entries' WireGuard ports (UDP, and TCP for registration),
// neighbour discovery and DHCP.
func fastLeakTable(entries []wgGateway) string {
	var allow []string
	for _, e := range entries {
		ap := netip.MustParseAddrPort(e.WGAddr)
		allow = append(allow, fmt.Sprintf("\t\tip daddr %s meta l4proto { tcp, udp } th dport %d return", ap.Addr(), ap.Port()))
	}
	return `table inet e2e_leak {
	counter leak { }
	chain post {
		type filter hook postrouting priority 500; policy accept;
		oifname != "lan0" return
		ip daddr { 192.0.2.10, 192.0.2.11, 192.0.2.12 } tcp dport 8000 return
` + strings.Join(allow, "\n") + `
		ip6 daddr { fe80::/10, ff02::/16 } return
		udp sport 68 udp dport 67 return
		counter name leak
	}
}
`
}

// TestFastModeKillSwitchReconnect kills the entry gateway of the fast
// tunnel (the network has two): the client must rebuild the tunnel through
// the other, and meanwhile nothing may leave the uplink but to the
// authorities and the entries' WireGuard ports.
func TestFastModeKillSwitchReconnect(t *testing.T) {
	n := upNet(t, 2)
	entries, _ := n.wgGateways()
	if len(entries) < 2 {
		t.Fatalf("%d entries announce WireGuard; the test needs 2", len(entries))
	}
	n.fastLeakCounters(entries)

	n.connect("--mode", "fast")
	st0, err := n.fastStatus()
	if err != nil || st0.Stats == nil || st0.Mode != "fast" {
		t.Fatalf("status: %v %+v", err, st0)
	}
	var used string
	for _, e := range entries {
		if e.Identity == st0.Entry {
			used = map[string]string{"192.0.2.20": "entry", "192.0.2.21": "entry2"}[netip.MustParseAddrPort(e.WGAddr).Addr().String()]
		}
	}
	if used == "" {
		t.Fatalf("the entry in use %s is not one of %v", st0.Entry, entries)
	}
	n.resetLeaks("client", "inet")

	killed := n.killNode(used)
	stopTraffic := n.outageTraffic()
	var st fastStatus
	deadline := time.Now().Add(3 * time.Minute) // a guard against a hang
	for {
		st, err = n.fastStatus()
		if err == nil && st.State == "connected" && st.Stats != nil && st.Stats.Reconnects > st0.Stats.Reconnects {
			break
		}
		if time.Now().After(deadline) {
			stopTraffic()
			t.Fatalf("no reconnect within 3 min of killing the entry: %v %+v (leaks so far: lan0 %d, internet %d)",
				err, st, n.leakCount("client"), n.leakCount("inet"))
		}
		time.Sleep(250 * time.Millisecond)
	}
	reconnected := time.Since(killed)
	stopTraffic()
	lanLeak, inetLeak := n.leakCount("client"), n.leakCount("inet")
	t.Logf("reconnected through %s after %v; leaked packets: lan0 %d, internet %d", st.Entry, reconnected.Round(time.Millisecond), lanLeak, inetLeak)
	if lanLeak != 0 || inetLeak != 0 {
		t.Errorf("the kill switch leaked during the outage: %d packets out of lan0, %d into the internet", lanLeak, inetLeak)
	}
	if st.Entry == st0.Entry {
		t.Errorf("reconnected through the killed entry %s", st.Entry)
	}
	page, err := n.in("client", time.Minute, "curl", "-sf", "--max-time", "30", "http://"+e2eInet4+"/")
	if err != nil || !strings.Contains(page, "you are "+e2eExit4+":") {
		t.Errorf("no page through the tunnel after the reconnect: %v %q", err, page)
	}
	if out, err := n.vpn("disconnect"); err != nil {
		t.Errorf("disconnect: %v %s", err, out)
	}
}

// killNode kills role's nym-node (SIGKILL), after checking that the PID
// recorded for it lives in its namespace, and returns when.
func (n *e2eNet) killNode(role string) time.Time {
	t := n.t
	t.Helper()
	pidb, err := os.ReadFile(filepath.Join(n.state, "pids", "nym-node-"+role))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	var pidNS string
	fmt.Sscan(string(pidb), &pid, &pidNS)
	if got, _ := n.run(5*time.Second, "ip", "netns", "identify", strconv.Itoa(pid)); strings.TrimSpace(got) != pidNS {
		t.Fatalf("pid %d of nym-node-%s is not in %s (%q)", pid, role, pidNS, got)
	}
	killed := time.Now()
	if err := syscallKill(pid); err != nil {
		t.Fatalf("killing nym-node-%s: %v", role, err)
	}
	t.Logf("killed nym-node-%s (pid %d), the entry gateway in use", role, pid)
	return killed
}

// outageTraffic keeps the client sending while the tunnel is down: the
// internet through the tunnel, and the LAN (the exit's and a mixnode's
// addresses) that is directly connected and would leak without the kill
// switch. stop ends it and waits.
func (n *e2eNet) outageTraffic() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, args := range [][]string{
		{"curl", "-s", "--max-time", "1", "http://" + e2eInet4 + "/"},
		{"curl", "-s", "--max-time", "1", "http://192.0.2.40:8080/api/v1/roles"},
		{"ping", "-c", "1", "-W", "1", "192.0.2.31"},
		{"getent", "ahostsv4", "internet.test"},
	} {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				n.in("client", 5*time.Second, args...)
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
	return func() { close(done); wg.Wait() }
}
