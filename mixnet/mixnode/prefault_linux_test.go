package mixnode

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestReplayPrefault: with Config.ReplayPrefault, SetKeys leaves the new
// key's filter resident, and the Mixer works as without it.
func TestReplayPrefault(t *testing.T) {
	resident := func() uint64 {
		b, err := os.ReadFile("/proc/self/statm")
		if err != nil {
			t.Fatal(err)
		}
		pages, err := strconv.ParseUint(strings.Fields(string(b))[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return pages * uint64(os.Getpagesize())
	}
	mix, next := newNode(t), newNode(t)
	h := startMixer(t, func(c *Config) {
		c.ReplayCapacity = 10_000_000 // ~37 MB
		c.ReplayPrefault = true
	})
	before := resident()
	h.mustSetKeys(t, RotationKey{Rotation: 4, Key: mix.key})
	size := h.keys.lookup(false).replay.Bytes()
	if got := resident() - before; got < size*9/10 {
		t.Fatalf("SetKeys made %d bytes resident, want about the filter's %d", got, size)
	}

	pkt := packetVia(t, mix.key, 0, next, []byte("prefaulted"))
	replayed := append([]byte(nil), pkt...)
	h.Submit(pkt, false)
	openAt(t, next, h.next(t), []byte("prefaulted"))
	h.Submit(replayed, false)
	waitFor(t, "replay drop", func() bool { return h.dropped(t, "replay") == 1 })
}
