package vpn

import (
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/client"
)

// anonymous-plus keeps what makes the default anonymous (mixing delays,
// cover, a constant Poisson stream) and only raises the rate; its idle
// cost is the stream's rate in full-size packets.
func TestAnonymousPlusProfile(t *testing.T) {
	p, err := ProfileByName("anonymous-plus")
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultProfile()
	if p.Weak || p.Loopix.HopDelay != d.Loopix.HopDelay || p.Loopix.CoverInterval != d.Loopix.CoverInterval || p.Loopix.SendInterval <= 0 {
		t.Errorf("anonymous-plus gives up mixing: %+v", p)
	}
	if p.Loopix.PacketsPerSecond() <= d.Loopix.PacketsPerSecond() {
		t.Errorf("anonymous-plus sends %.0f packets/s, no more than default's %.0f", p.Loopix.PacketsPerSecond(), d.Loopix.PacketsPerSecond())
	}
	if !p.Loopix.ExtendedReplies || p.Loopix.ExtendedCoverInterval <= 0 || p.repliesPerSURB() != 4 {
		t.Errorf("anonymous-plus: extended replies without extended cover, or none: %+v", p.Loopix)
	}
	ext := float64(time.Second) / float64(p.Loopix.ExtendedCoverInterval)
	want := (p.Loopix.PacketsPerSecond()-ext)*client.WirePacketSize + ext*client.ExtendedWirePacketSize
	if got := p.IdleBytesPerSecond(); got != want {
		t.Errorf("IdleBytesPerSecond = %.0f, want %.0f", got, want)
	}
	if !strings.Contains(p.IdleCost(), "Mbit/s") {
		t.Errorf("IdleCost %q does not state a rate", p.IdleCost())
	}
	for _, anon := range []Profile{d, p} {
		if anon.Loopix.DownstreamInterval <= 0 || anon.IdleDownBytesPerSecond() != anon.Loopix.DownstreamBytesPerSecond() ||
			!strings.Contains(anon.IdleCost(), "down, idle or not") {
			t.Errorf("%s: downstream not shaped, or its cost not said: %q", anon.Name, anon.IdleCost())
		}
	}
	// Bytes, not frames: anonymous-plus's frames hold an extended reply.
	if p.Loopix.DownstreamBytesPerSecond() <= d.Loopix.DownstreamBytesPerSecond() {
		t.Errorf("anonymous-plus's downstream (%.0f B/s) is no faster than default's (%.0f B/s)", p.Loopix.DownstreamBytesPerSecond(), d.Loopix.DownstreamBytesPerSecond())
	}
	if n, _ := ProfileByName("nodelay"); n.IdleBytesPerSecond() != 0 || n.Loopix.DownstreamInterval != 0 {
		t.Errorf("nodelay spends %.0f B/s idle, want 0", n.IdleBytesPerSecond())
	}
	if _, err := ProfileByName("plus"); err == nil || !strings.Contains(err.Error(), "anonymous-plus") {
		t.Errorf("unknown profile's error %v does not list anonymous-plus", err)
	}
}
