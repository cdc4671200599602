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
	wall    float64 // seconds
}

// usPerPacket, usPerMB and coreMbps are NaN when their divisor is zero.
func (c cost) usPerPacket() float64 { return div(c.cpu*1e6, c.packets) }
func (c cost) usPerMB() float64     { return div(c.cpu*1e6, c.mb) }
func (c cost) share() float64       { return div(c.cpu, c.wall) }

// coreMbps is the tunnel traffic one core carries in this role when the
// role's CPU per MB stays what it was: 8 Mbit per MB, 10⁶ µs per second.
func (c cost) coreMbps() float64 { return div(8e6, c.usPerMB()) }

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

// tunnelMB is the IP traffic through the tunnel in w, both directions.
func tunnelMB(w window) float64 {
	return (w.b.vpn.BytesUp - w.a.vpn.BytesUp + w.b.vpn.BytesDown - w.a.vpn.BytesDown) / 1e6
}

// roleCost is role's cost in w; ok is false when bench.sh recorded no CPU
// time for it.
func roleCost(w window, role string) (c cost, ok bool) {
	a, okA := w.a.cpu[role]
	b, okB := w.b.cpu[role]
	if !okA || !okB {
		return cost{}, false
	}
	return cost{cpu: b - a, packets: packetsHandled(w, role), mb: tunnelMB(w), wall: w.b.time - w.a.time}, true
}

// mixMean is the mixes' mean cost: their CPU and packets averaged, so
// µs/packet is their total CPU over their total packets.
func mixMean(w window) (cost, int) {
	var sum cost
	n := 0
	for _, r := range roles {
		if !strings.HasPrefix(r, "mix") {
			continue
		}
		c, ok := roleCost(w, r)
		if !ok {
			continue
		}
		sum.cpu += c.cpu
		sum.packets += c.packets
		sum.mb, sum.wall = c.mb, c.wall
		n++
	}
	if n == 0 {
		return cost{}, 0
	}
	sum.cpu /= float64(n)
	sum.packets /= float64(n)
	return sum, n
}
