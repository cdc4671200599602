package vpn

import (
	"strings"
	"testing"

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
	want := p.Loopix.PacketsPerSecond() * client.WirePacketSize
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
	if p.Loopix.DownstreamInterval >= d.Loopix.DownstreamInterval {
		t.Errorf("anonymous-plus's downstream (%v) is no faster than default's (%v)", p.Loopix.DownstreamInterval, d.Loopix.DownstreamInterval)
	}
	if n, _ := ProfileByName("nodelay"); n.IdleBytesPerSecond() != 0 || n.Loopix.DownstreamInterval != 0 {
		t.Errorf("nodelay spends %.0f B/s idle, want 0", n.IdleBytesPerSecond())
	}
	if _, err := ProfileByName("plus"); err == nil || !strings.Contains(err.Error(), "anonymous-plus") {
		t.Errorf("unknown profile's error %v does not list anonymous-plus", err)
	}
}
