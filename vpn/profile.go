package vpn

import (
	"fmt"
	"time"

	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/sphinx"
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

// PlusDownstreamInterval is anonymous-plus's shaped downstream: about 167
// frames/s of an extended packet's slot (8.2 KB, DownstreamFrameLen), 1.4
// MB/s, as the 667 regular-size frames/s first chosen. A slot holds one
// extended reply or four regular deliveries, so idle, its ~205 packets/s of
// regular loop cover and acks come back in ~52 slots and its 10 extended
// cover in 10; a download's replies take the rest, ~105/s of 8165 bytes
// (~6.9 Mbit/s), above what this machine's local network reaches.
const PlusDownstreamInterval = 6 * time.Millisecond

// PlusSendInterval is the anonymous-plus profile's mean Poisson interval:
// 200 packets/s, four times Nym's. Chosen by measuring 200, 333, 500 and
// 1000/s in the local network (all seven processes on 2 cores, which other
// work loaded to 10-40): at 500/s and above the client cannot hold its rate
// (idle 60-88% of it: each packet, real or cover, is nine X25519 ladders,
// and each mix pays a ladder per packet), and download, upload and page
// load all came out worse than at 200/s, where the rate holds and the
// download and page beat the default profile's. A faster host affords a
// faster stream; the cost per packet is what sets it. Measured again after
// the client's multiplications by node keys became fixed-base (about half
// the cost per packet): at 300/s the client held 98% of its rate in the
// local network, but the in-process shape test (all nodes in one process)
// fell to 75-80% of it while downloading, so the rate stays 200/s.
const PlusSendInterval = 5 * time.Millisecond

// PlusExtendedCoverInterval is the anonymous-plus profile's mean interval
// of loop cover in extended packets: 10 per second, so that extended
// packets at every mix are not only replies (see AnonymousPlusProfile).
const PlusExtendedCoverInterval = 100 * time.Millisecond

// AnonymousPlusProfile keeps Nym's mixing (15 ms mean delay per hop, loop
// cover every 200 ms) and raises the Poisson stream from 50 to 200
// packets/s, so that four times the SURBs and upstream data go out per
// second: every reply needs a SURB, so the upstream rate caps the download.
//
// Its SURBs make extended replies (8 KiB, Nym's ExtendedPacket8; see
// client.Loopix.ExtendedReplies): four times the data per SURB and per
// Sphinx operation at every hop. Three SURBs per slot at 200 slots/s carry
// about 600 replies/s, ~39 Mbit/s, where regular replies capped it at ~10.
// The anonymity price: extended packets are a class of their own at every
// mix, hidden only among other extended packets, so a mix sees fewer
// packets to mix a reply with than a regular one has, and a client's
// downstream of extended packets sets it apart from regular-profile users
// to whoever sees its gateway link unless that link is shaped. To keep the
// class from being only replies, the profile sends extended loop cover
// (PlusExtendedCoverInterval), built as replies to itself. The price of the
// rate is a constant stream while idle (IdleBytesPerSecond: about 4 Mbit/s
// each way).
func AnonymousPlusProfile() Profile {
	lp := client.NymDefaults()
	lp.SendInterval = PlusSendInterval
	lp.ExtendedReplies = true
	lp.ExtendedCoverInterval = PlusExtendedCoverInterval
	lp.DownstreamInterval = PlusDownstreamInterval
	return Profile{
		Name:   "anonymous-plus",
		Loopix: lp,
		Description: fmt.Sprintf("Nym's mixing (15 ms per hop, cover) at a higher constant rate: %.0f packets/s Poisson, cover every 200 ms, 8 KiB replies with %.0f/s 8 KiB cover",
			float64(time.Second)/float64(lp.SendInterval), float64(time.Second)/float64(lp.ExtendedCoverInterval)),
	}
}

// repliesPerSURB is how many regular replies' worth of data one of the
// profile's SURBs carries back.
func (p Profile) repliesPerSURB() int {
	if p.Loopix.ExtendedReplies {
		return sphinx.ExtendedPayload / sphinx.RegularPayload
	}
	return 1
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
