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

func printWindow(out io.Writer, w window) {
	dir := "download (iperf3 -R)"
	if w.kind == "up" {
		dir = "upload"
	}
	wall := w.b.time - w.a.time
	mb := tunnelMB(w)
	fmt.Fprintf(out, "\n%s, %s: %.1f s, %.2f MB through the tunnel (%.2f Mbit/s)\n", w.label, dir, wall, mb, mb*8/wall)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "role\tCPU, % of a core\tpackets\tµs/packet\tµs/MB\tone core, Mbit/s\t")
	row := func(name string, c cost) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", name, f(100*c.share(), 0), f(c.packets, 0),
			f(c.usPerPacket(), 1), f(c.usPerMB(), 0), f(c.coreMbps(), 1))
	}
	for _, r := range roles {
		if c, ok := roleCost(w, r); ok {
			row(roleName(r), c)
		}
		if r == "mix3" {
			if c, n := mixMean(w); n > 0 {
				row(fmt.Sprintf("mix (mean of %d)", n), c)
			}
		}
	}
	tw.Flush()
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
	payload = c.ReplyCapacity() - ipr.DataDownOverhead - ipr.LengthPrefixSize
	return lambda * float64(surbs*payload) * 8 / 1e6, lambda, surbs, payload, true
}

// printProjection prints, for each profile with a download window, the
// download one client gets when every node has a host of hostCores cores:
// the least of each role's bound (hostCores × one core's capacity in that
// role), the client's own, and the protocol's cap at λ.
func printProjection(out io.Writer, ws []window) {
	for _, w := range ws {
		if w.kind != "down" {
			continue
		}
		fmt.Fprintf(out, "\nprojection, %s: one client's download when every node and the client has a %d-core host of its own\n", w.label, hostCores)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		best, bound := math.Inf(1), ""
		add := func(name string, mbps float64, how string) {
			fmt.Fprintf(tw, "  %s\t%s Mbit/s\t%s\n", name, f(mbps, 1), how)
			if !math.IsNaN(mbps) && mbps < best {
				best, bound = mbps, name
			}
		}
		// The mixes are one role: the costliest of them bounds it.
		var costliestMix cost
		for _, r := range roles {
			if c, ok := roleCost(w, r); ok && strings.HasPrefix(r, "mix") &&
				(costliestMix.cpu == 0 || c.usPerMB() > costliestMix.usPerMB()) {
				costliestMix = c
			}
		}
		for _, r := range roles {
			c, ok := roleCost(w, r)
			switch {
			case r == "mix1" && costliestMix.cpu > 0:
				c, ok, r = costliestMix, true, "mix (the costliest)"
			case strings.HasPrefix(r, "mix"):
				ok = false
			}
			if ok {
				add(roleName(r), hostCores*c.coreMbps(), fmt.Sprintf("%d × %s Mbit/s per core", hostCores, f(c.coreMbps(), 1)))
			}
		}
		if mbps, lambda, surbs, payload, ok := protocolCap(w.profile); ok {
			add("protocol at λ", mbps, fmt.Sprintf("λ × SURBs per packet × reply payload = %.0f/s × %d × %d B", lambda, surbs, payload))
		} else {
			fmt.Fprintf(tw, "  protocol at λ\t-\tprofile %q has no Poisson stream (or is unknown here)\n", w.profile)
		}
		tw.Flush()
		if bound == "" {
			continue
		}
		fmt.Fprintf(out, "  projected: %.1f Mbit/s (bound by %s)\n", best, bound)
		mix, n := mixMean(w)
		if n == 0 {
			continue
		}
		fmt.Fprintf(out, "  one mix core carries %s such downloads (%s Mbit/s per core / %.1f)", f(math.Floor(mix.coreMbps()/best), 0), f(mix.coreMbps(), 1), best)
		if idle, ok := idleOf(ws, w.profile); ok {
			im, _ := mixMean(idle)
			pps := im.packets / im.wall
			fmt.Fprintf(out, ", or %s idle clients (%.0f packets/s each at a mix, %s µs per packet)",
				f(math.Floor(div(1e6/mix.usPerPacket(), pps)), 0), pps, f(mix.usPerPacket(), 1))
		}
		fmt.Fprintln(out)
	}
}

// idleOf finds profile's idle window.
func idleOf(ws []window, profile string) (window, bool) {
	for _, w := range ws {
		if w.kind == "idle" && w.profile == profile {
			return w, true
		}
	}
	return window{}, false
}
