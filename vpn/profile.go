package vpn

import (
	"fmt"
	"time"

	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
)

// Profile is a mixing setting: how the mixnet client shapes the tunnel's
// traffic. It trades anonymity for speed, so the choice is the user's.
type Profile struct {
	Name string
	// Loopix is passed to the mixnet client.
	Loopix client.Loopix
	// Weak marks a profile that gives up much of the mixnet's anonymity:
	// without mixing delays and cover traffic a network observer can match
	// the packets entering and leaving the mixnet by their timing.
	Weak bool
	// Description is one line for users.
	Description string
}

// reorderFloor bounds the resequencing timeout from below: even without
// mixing delays packets race through goroutines and sockets.
const reorderFloor = 20 * time.Millisecond

// DefaultDownstreamInterval is the default profile's shaped downstream:
// 200 frames/s from the entry gateway, about 419 kB/s whether the tunnel
// downloads or not, so a watcher of the user's link cannot see downloads.
// Idle, some 57 of them carry the returning loop cover and acks; a
// download's replies take the rest (and the slots its own upstream data
// frees from loop cover): at least some 140 replies/s, 2.3 Mbit/s, above
// what the unshaped tunnel reached. Measured in the local network (README
// "Measured through the VPN"): at 100/s the download fell to 0.59 Mbit/s,
// below Nym's own 0.97 Mbit/s cap, and a 500 KiB page took 8.3 s; at 150/s
// 1.01-1.07 Mbit/s and 4.7-5.1 s, just above the cap; at 200/s about what
// the unshaped tunnel does.
const DefaultDownstreamInterval = time.Second / 200

// DefaultProfile is Nym's mixing: 15 ms mean delay per hop, a Poisson stream
// of 50 packets/s and loop cover every 200 ms, with the downstream shaped
// to DefaultDownstreamInterval.
func DefaultProfile() Profile {
	lp := client.NymDefaults()
	lp.DownstreamInterval = DefaultDownstreamInterval
	return Profile{
		Name:        "default",
		Loopix:      lp,
		Description: "Nym's mixing parameters: 15 ms per hop, 50 packets/s Poisson, cover every 200 ms; downloads hidden in a constant stream",
	}
}

// PlusDownstreamInterval is anonymous-plus's shaped downstream: about 667
// frames/s, 1.4 MB/s. Idle, its 200 packets/s of loop cover come back in
// some 210 of them; a download's replies take the rest, at least some 460/s
// (7.4 Mbit/s) even if every upstream slot stays loop cover, so the
// profile's 5 Mbit/s target is not capped by it.
const PlusDownstreamInterval = 1500 * time.Microsecond

// PlusSendInterval is the anonymous-plus profile's mean Poisson interval:
// 200 packets/s, four times Nym's. Chosen by measuring 200, 333, 500 and
// 1000/s in the local network (all seven processes on 2 cores, which other
// work loaded to 10-40): at 500/s and above the client cannot hold its rate
// (idle 60-88% of it: each packet, real or cover, is nine X25519 ladders,
// and each mix pays a ladder per packet), and download, upload and page
// load all came out worse than at 200/s, where the rate holds and the
// download and page beat the default profile's. A faster host affords a
// faster stream; the cost per packet is what sets it.
const PlusSendInterval = 5 * time.Millisecond

// AnonymousPlusProfile keeps Nym's mixing (15 ms mean delay per hop, loop
// cover every 200 ms) and raises the Poisson stream from 50 to 200
// packets/s, so that four times the SURBs and upstream data go out per
// second: every reply needs a SURB, so the upstream rate caps the download
// (three SURBs per slot: about 600 replies/s, ~10 Mbit/s, at 200 slots/s).
// The price is a constant stream of that rate while idle
// (IdleBytesPerSecond: about 4 Mbit/s each way).
func AnonymousPlusProfile() Profile {
	lp := client.NymDefaults()
	lp.SendInterval = PlusSendInterval
	lp.DownstreamInterval = PlusDownstreamInterval
	return Profile{
		Name:   "anonymous-plus",
		Loopix: lp,
		Description: fmt.Sprintf("Nym's mixing (15 ms per hop, cover) at a higher constant rate: %.0f packets/s Poisson, cover every 200 ms",
			float64(time.Second)/float64(lp.SendInterval)),
	}
}

// NoDelayProfile turns mixing down for speed: 1 ms mean delay per hop,
// packets sent as soon as they are ready, no cover traffic. WEAKER
// ANONYMITY: timing correlation between the entry and the exit becomes
// easy. (It was called "fast"; fast now means nymvpn's two-hop WireGuard
// mode, which is faster still and no weaker against that observer.)
func NoDelayProfile() Profile {
	return Profile{
		Name:        "nodelay",
		Loopix:      client.Loopix{HopDelay: time.Millisecond},
		Weak:        true,
		Description: "WEAKER ANONYMITY: 1 ms per hop, no Poisson stream, no cover traffic",
	}
}

// FastProfile is the old name of NoDelayProfile.
//
// Deprecated: use NoDelayProfile.
func FastProfile() Profile { return NoDelayProfile() }

// ProfileByName returns the profile called name ("default",
// "anonymous-plus" or "nodelay").
func ProfileByName(name string) (Profile, error) {
	switch name {
	case "", "default":
		return DefaultProfile(), nil
	case "anonymous-plus":
		return AnonymousPlusProfile(), nil
	case "nodelay":
		return NoDelayProfile(), nil
	case "fast":
		return Profile{}, fmt.Errorf("vpn: the profile once called fast is now nodelay (--profile nodelay); fast mode is --mode fast")
	}
	return Profile{}, fmt.Errorf("vpn: unknown profile %q (want default, anonymous-plus or nodelay)", name)
}

// ReorderTimeout is how long the downstream resequencer waits for a missing
// message. The quantile of a sum of exponential delays scales with their
// mean, so Nym's figure is scaled by the profile's hop delay.
func (p Profile) ReorderTimeout() time.Duration {
	nym := client.NymDefaults().HopDelay
	d := time.Duration(float64(ipr.DefaultReorderTimeout) * float64(p.Loopix.HopDelay) / float64(nym))
	return max(d, reorderFloor)
}

// IdleBytesPerSecond is what the profile spends on cover towards the entry
// gateway while the tunnel is idle. Zero for a profile without cover.
func (p Profile) IdleBytesPerSecond() float64 { return p.Loopix.IdleBytesPerSecond() }

// IdleDownBytesPerSecond is what comes down from the entry gateway while
// the tunnel is idle: the shaped downstream's constant rate, or, unshaped,
// the loop cover coming back (about IdleBytesPerSecond).
func (p Profile) IdleDownBytesPerSecond() float64 {
	if d := p.Loopix.DownstreamBytesPerSecond(); d > 0 {
		return d
	}
	return p.IdleBytesPerSecond()
}

// IdleCost says what the profile costs while idle in plain words, for
// users (`nymvpn status`, --profile's help).
func (p Profile) IdleCost() string {
	up, down := p.IdleBytesPerSecond(), p.IdleDownBytesPerSecond()
	if up == 0 {
		return "no cover traffic: nothing is sent while idle"
	}
	day := (up + down) * 86400 / 1e9
	if p.Loopix.DownstreamInterval <= 0 {
		return fmt.Sprintf("%.0f kB/s (%.1f Mbit/s) each way on cover while idle, about %.1f GB a day",
			up/1e3, up*8/1e6, day)
	}
	return fmt.Sprintf("%.0f kB/s (%.1f Mbit/s) up on cover and a constant %.0f kB/s (%.1f Mbit/s) down, idle or not, "+
		"so downloads do not show; about %.1f GB a day",
		up/1e3, up*8/1e6, down/1e3, down*8/1e6, day)
}
