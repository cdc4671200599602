package client

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// A client with ExtendedReplies hands out SURBs whose replies are extended
// packets: a reply stream through them gets an extended packet's room, and
// the data crosses real mixes and gateways (and a shaped downstream)
// intact. Its extended loop cover crosses them too and comes back to it,
// matching nothing.
func TestExtendedReplies(t *testing.T) {
	n := testnet.Start(t, testnet.Options{})
	n.WaitRoutable(10 * time.Second)
	a := connect(t, n, func(c *Config) {
		lp := fast
		lp.ExtendedReplies = true
		lp.ExtendedCoverInterval = 10 * time.Millisecond
		// Shaped: every slot must hold an extended delivery
		// (DownstreamFrameLen), or the gateway drops them.
		lp.DownstreamInterval = 5 * time.Millisecond
		c.Loopix = &lp
	})
	b := connect(t, n, func(c *Config) { c.SURBs = SURBPolicy{LowWater: 1} })
	if err := a.SendRepliablePacket(context.Background(), b.Address(), []byte("surbs"), 3); err != nil {
		t.Fatal(err)
	}
	m := receive(t, b, 30*time.Second)
	go func() {
		for range b.Receive() {
		}
	}()

	src := &testSource{t: t}
	st, err := b.OpenReplyStream(m.SenderTag, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src.add(2)
	st.Wake()
	// Two messages through the mixnet may arrive in either order (nothing
	// resequences them here): each must be one of those sent, whole.
	got := make([]bool, 2)
	for range 2 {
		r := receive(t, a, 30*time.Second)
		i := slices.IndexFunc([]int{0, 1}, func(i int) bool { return !got[i] && bytes.Equal(r.Data, src.payload(i)) })
		if !r.IsReply || i < 0 {
			t.Fatalf("a reply of %d bytes, reply=%v, is neither payload sent (or came twice)", len(r.Data), r.IsReply)
		}
		got[i] = true
		if want := src.payload(i); len(want) != sphinx.ExtendedPayload-FragmentHeaderLen-1 {
			t.Fatalf("reply %d: the source was given %d bytes of room, want an extended packet's", i, len(want))
		}
	}
	// A plain reply of regular size fits the extended SURB that is left.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Reply(ctx, m.SenderTag, []byte("short")); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, a, 30*time.Second); string(r.Data) != "short" || !r.IsReply {
		t.Fatalf("reply %q, reply=%v", r.Data, r.IsReply)
	}
	waitFor(t, 30*time.Second, "extended cover back", func() bool {
		s := a.Stats()
		return s.CoverPacketsSent >= 5 && s.UnmatchedDeliveries >= 5 && s.BadDeliveries == 0
	})
}
