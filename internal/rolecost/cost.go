package main

import (
	"math"
	"strings"
)

// roles in the order a packet meets them, as bench.sh names them. The exit
// gateway's IP packet router runs in its process, so "exit" is both.
var roles = []string{"client", "entry", "mix1", "mix2", "mix3", "exit"}

// cost is one role's share of a window.
type cost struct {
	cpu     float64 // CPU seconds, user + system
	packets float64 // Sphinx packets handled
	mb      float64 // MB (10⁶ bytes) of IP packets through the tunnel, both directions
	data    float64 // packets that carried the tunnel's data (see dataPackets)
	wall    float64 // seconds
	// idle and idlePPS are the role's CPU seconds per second and packets
	// per second for this client's idle tunnel (the profile's idle window;
	// 0 when there is none): the Poisson stream and cover cost it whether
	// data flows or not.
	idle, idlePPS float64
}

// usPerPacket, usPerMB and coreMbps are NaN when their divisor is zero.
func (c cost) usPerPacket() float64 { return div(c.cpu*1e6, c.packets) }
func (c cost) share() float64       { return div(c.cpu, c.wall) }

// usPerMB is the CPU a MB costs above the idle tunnel's: the packets that
// carry data, at the window's µs per packet. The idle tunnel's (the
// Poisson stream and cover) is paid whether data flows or not, and at a
// constant rate most of a download's packets are that; counted per MB it
// would shrink as the download grows. (Subtracting the idle window's CPU
// time or packets instead leaves a small difference of two large, noisy
// figures on a loaded machine.)
func (c cost) usPerMB() float64 { return c.usPerPacket() * div(c.data, c.mb) }

// coreMbps is the tunnel traffic one core carries in this role, all of it
// spent on data: 8 Mbit per MB, 10⁶ µs per second.
func (c cost) coreMbps() float64 { return div(8e6, c.usPerMB()) }

// hostMbps is one client's download a host of cores cores allows in this
// role: what the idle tunnel leaves of them, at coreMbps per core.
func (c cost) hostMbps(cores float64) float64 { return (cores - c.idle) * c.coreMbps() }

func div(a, b float64) float64 {
	if b <= 0 || math.IsNaN(b) {
		return math.NaN()
	}
	return a / b
}

// packetsHandled counts the Sphinx packets role moved in w. A node's are
// those it unwrapped (mixnode_packets_received: as a mix, and as a gateway
// the last hop of what it delivers) plus those it put into the mixnet for
// others (gateway_packets_forwarded: its clients' and its IP router's
// packets) and the acks it sent for deliveries. The client has no metrics
// endpoint: its packets are its entry gateway's client side, forwarded
// from clients and delivered to them, which is exact while it is the only
// client (bench.sh runs one at a time).
func packetsHandled(w window, role string) float64 {
	if role == "client" {
		return delta(w.a, w.b, "entry", "nym_gateway_packets_forwarded_total") +
			delta(w.a, w.b, "entry", "nym_gateway_delivered_live_total") +
			delta(w.a, w.b, "entry", "nym_gateway_delivered_from_store_total")
	}
	return delta(w.a, w.b, role, "nym_mixnode_packets_received_total") +
		delta(w.a, w.b, role, "nym_gateway_packets_forwarded_total") +
		delta(w.a, w.b, role, "nym_gateway_acks_sent_total")
}

// dataPackets counts the packets that carried the tunnel's data in w: the
// exit gateway's, since every upstream packet with data ends there, every
// reply starts there, and no cover reaches it. Each crosses every mix and
// the entry gateway once, and the client builds or opens it.
func dataPackets(w window) float64 { return packetsHandled(w, "exit") }

// tunnelMB is the IP traffic through the tunnel in w, both directions.
func tunnelMB(w window) float64 {
	return (w.b.vpn.BytesUp - w.a.vpn.BytesUp + w.b.vpn.BytesDown - w.a.vpn.BytesDown) / 1e6
}

// roleCost is role's cost in w, with idle from idle when it is not nil; ok
// is false when bench.sh recorded no CPU time for it.
func roleCost(w window, idle *window, role string) (c cost, ok bool) {
	a, okA := w.a.cpu[role]
	b, okB := w.b.cpu[role]
	if !okA || !okB {
		return cost{}, false
	}
	c = cost{cpu: b - a, packets: packetsHandled(w, role), mb: tunnelMB(w), data: dataPackets(w), wall: w.b.time - w.a.time}
	if idle != nil {
		if i, ok := roleCost(*idle, nil, role); ok {
			c.idle, c.idlePPS = i.share(), div(i.packets, i.wall)
		}
	}
	return c, true
}

// mixMean is the mixes' mean cost: their CPU, packets and idle share
// averaged, so µs/packet is their total CPU over their total packets.
func mixMean(w window, idle *window) (cost, int) {
	var sum cost
	n := 0
	for _, r := range roles {
		if !strings.HasPrefix(r, "mix") {
			continue
		}
		c, ok := roleCost(w, idle, r)
		if !ok {
			continue
		}
		sum.cpu += c.cpu
		sum.packets += c.packets
		sum.idle += c.idle
		sum.idlePPS += c.idlePPS
		sum.mb, sum.data, sum.wall = c.mb, c.data, c.wall
		n++
	}
	if n == 0 {
		return cost{}, 0
	}
	sum.cpu /= float64(n)
	sum.packets /= float64(n)
	sum.idle /= float64(n)
	sum.idlePPS /= float64(n)
	return sum, n
}
