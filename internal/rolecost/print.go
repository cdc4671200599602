package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/vpn"
)

// hostCores is the host the projection gives each node and the client.
const hostCores = 2

var roleNames = map[string]string{
	"client": "client (nymvpn daemon)",
	"entry":  "entry gateway",
	"exit":   "exit gateway + IP router",
}

func roleName(r string) string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return r
}

func f(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func printWindow(out io.Writer, w window, idle *window) {
	dir := "download (iperf3 -R)"
	if w.kind == "up" {
		dir = "upload"
	}
	wall := w.b.time - w.a.time
	mb := tunnelMB(w)
	fmt.Fprintf(out, "\n%s, %s: %.1f s, %.2f MB through the tunnel (%.2f Mbit/s), %.0f data packets per MB\n",
		w.label, dir, wall, mb, mb*8/wall, div(dataPackets(w), mb))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "role\tCPU % of a core\tidle CPU %\tpackets\tidle packets/s\tµs/packet\tµs/MB\tone core, Mbit/s\t")
	row := func(name string, c cost) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, f(100*c.share(), 1), f(100*c.idle, 1), f(c.packets, 0),
			f(c.idlePPS, 0), f(c.usPerPacket(), 1), f(c.usPerMB(), 0), f(c.coreMbps(), 1))
	}
	for _, r := range roles {
		if c, ok := roleCost(w, idle, r); ok {
			row(roleName(r), c)
		}
		if r == "mix3" {
			if c, n := mixMean(w, idle); n > 0 {
				row(fmt.Sprintf("mix (mean of %d)", n), c)
			}
		}
	}
	tw.Flush()
	printSlots(out, w, wall)
}

// printSlots says what the client's upstream packets carried in w, per
// second: the slots a DataUp took, split by what it held, beside loop
// cover, and the SURBs given against the replies that spent them. Absent
// from a status without the counters (older daemons).
func printSlots(out io.Writer, w window, wall float64) {
	d := func(get func(vpnCounters) float64) float64 { return div(get(w.b.vpn)-get(w.a.vpn), wall) }
	real, cover := d(func(v vpnCounters) float64 { return v.SlotsReal }), d(func(v vpnCounters) float64 { return v.SlotsCover })
	if real+cover == 0 {
		return
	}
	all := d(func(v vpnCounters) float64 { return v.BundlesUp })
	alone := d(func(v vpnCounters) float64 { return v.BundlesUpSURBsOnly })
	mixed := d(func(v vpnCounters) float64 { return v.BundlesUpWithSURBs })
	fmt.Fprintf(out, "  client packets/s: %s real, %s cover; DataUps/s: %s data alone, %s data and SURBs, %s SURBs alone; "+
		"SURBs given %s/s, replies %s/s (%s with data)\n",
		f(real, 1), f(cover, 1), f(all-alone-mixed, 1), f(mixed, 1), f(alone, 1),
		f(d(func(v vpnCounters) float64 { return v.SURBsSent }), 1), f(d(func(v vpnCounters) float64 { return v.SURBsUsed }), 1),
		f(d(func(v vpnCounters) float64 { return v.BundlesDown }), 1))
}

// protocolCap is the download one client's SURB supply allows at the
// profile's λ: every reply spends a SURB, SURBs reach the exit only in the
// Poisson stream's packets, at most surbs of them in one, and a reply
// carries at most payload bytes of IP packets.
func protocolCap(profile string) (mbps, lambda float64, surbs, payload int, ok bool) {
	p, err := vpn.ProfileByName(profile)
	if err != nil || p.Loopix.SendInterval <= 0 {
		return 0, 0, 0, 0, false
	}
	lambda = float64(time.Second) / float64(p.Loopix.SendInterval)
	// The capacities are constants of the packet format; no client is needed.
	var c *client.Client
	surbSize := c.RepliablePacketCapacity(0) - c.RepliablePacketCapacity(1)
	surbs = (c.RepliablePacketCapacity(0) - ipr.DataUpOverhead) / surbSize
	payload = p.Loopix.ReplyCapacity() - ipr.DataDownOverhead - ipr.LengthPrefixSize
	return lambda * float64(surbs*payload) * 8 / 1e6, lambda, surbs, payload, true
}

// printProjection prints, for each profile with a download window, the
// download one client gets when every node has a host of hostCores cores:
// the least of each role's bound (what the idle tunnel leaves of the
// host's cores, at one core's capacity each), the client's own, and the
// protocol's cap at λ.
func printProjection(out io.Writer, ws []window) {
	for _, w := range ws {
		if w.kind != "down" {
			continue
		}
		idle := idleOf(ws, w.profile)
		fmt.Fprintf(out, "\nprojection, %s: one client's download when every node and the client has a %d-core host of its own\n", w.label, hostCores)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		best, bound := math.Inf(1), ""
		add := func(name string, c cost) {
			mbps := c.hostMbps(hostCores)
			fmt.Fprintf(tw, "  %s\t%s Mbit/s\t(%d − %s idle) × %s Mbit/s per core\n", name, f(mbps, 1), hostCores, f(c.idle, 2), f(c.coreMbps(), 1))
			if !math.IsNaN(mbps) && mbps < best {
				best, bound = mbps, name
			}
		}
		// The mixes are one role: the costliest of them bounds it.
		var costliest cost
		found := false
		for _, r := range roles {
			if c, ok := roleCost(w, idle, r); ok && strings.HasPrefix(r, "mix") &&
				(!found || c.hostMbps(hostCores) < costliest.hostMbps(hostCores)) {
				costliest, found = c, true
			}
		}
		for _, r := range roles {
			c, ok := roleCost(w, idle, r)
			switch {
			case r == "mix1" && found:
				c, ok, r = costliest, true, "mix (the costliest)"
			case strings.HasPrefix(r, "mix"):
				ok = false
			}
			if ok {
				add(roleName(r), c)
			}
		}
		if mbps, lambda, surbs, payload, ok := protocolCap(w.profile); ok {
			fmt.Fprintf(tw, "  protocol at λ\t%s Mbit/s\tλ × SURBs per packet × reply payload = %.0f/s × %d × %d B\n", f(mbps, 1), lambda, surbs, payload)
			if mbps < best {
				best, bound = mbps, "protocol at λ"
			}
		} else {
			fmt.Fprintf(tw, "  protocol at λ\t-\tprofile %q has no Poisson stream (or is unknown here)\n", w.profile)
		}
		tw.Flush()
		if bound == "" {
			continue
		}
		fmt.Fprintf(out, "  projected: %.1f Mbit/s (bound by %s)\n", best, bound)
		if mix, n := mixMean(w, idle); n > 0 {
			// A client costs a mix its idle share plus its traffic.
			per := mix.idle + best/mix.coreMbps()
			fmt.Fprintf(out, "  one mix core carries %s such downloads (1 / (%.3f idle + %.1f / %s Mbit/s per core))",
				f(div(1, per), 1), mix.idle, best, f(mix.coreMbps(), 1))
			if idle != nil {
				fmt.Fprintf(out, ", or %s idle clients (1 / %.3f)", f(div(1, mix.idle), 1), mix.idle)
			}
			fmt.Fprintln(out)
		}
	}
}

// idleOf finds profile's idle window, or nil.
func idleOf(ws []window, profile string) *window {
	for i := range ws {
		if ws[i].kind == "idle" && ws[i].profile == profile {
			return &ws[i]
		}
	}
	return nil
}
