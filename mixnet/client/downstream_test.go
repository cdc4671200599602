package client

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/internal/testnet"
)

// A client that asks for a shaped downstream gets everything through its
// slots (a message of many fragments, whole), counts the gateway's cover,
// and asks again on every connection.
func TestShapedDownstream(t *testing.T) {
	leakcheck.Check(t)
	n := testnet.Start(t, testnet.Options{})
	n.WaitRoutable(10 * time.Second)
	const interval = 2 * time.Millisecond
	b := connect(t, n, func(c *Config) {
		lp := fast
		lp.DownstreamInterval = interval
		c.Loopix = &lp
		c.ReconnectMin, c.ReconnectMax = 50*time.Millisecond, 200*time.Millisecond
		// Minutes of slack: nothing is lost on loopback, resends only add load.
		c.Retransmit = &Retransmit{Max: 10, Multiplier: 1.5, Slack: 3 * time.Minute}
	})
	a := connect(t, n, func(c *Config) { c.Retransmit = &Retransmit{Max: 10, Multiplier: 1.5, Slack: 3 * time.Minute} })
	waitFor(t, 10*time.Second, "the gateway's grant and its cover", func() bool {
		s := b.Stats()
		return s.DownstreamInterval == interval && s.GatewayCover > 0
	})
	msg := randomBytes(256 << 10)
	before := b.Stats()
	if err := a.Send(context.Background(), b.Address(), msg); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, b, 3*time.Minute); !bytes.Equal(m.Data, msg) {
		t.Fatalf("received %d bytes, not the %d sent", len(m.Data), len(msg))
	}
	// Receipts go on their own clock, one per receiptSlots slots, not one
	// per slot that carried something: sent per delivery they showed the
	// downstream's activity on the upstream. During the transfer nearly
	// every slot carries a delivery; counted against the slots (both follow
	// the clock, so load slows both), receipts stay near 1 in receiptSlots
	// (twice that allowed), where per delivery they were ~9 in 10.
	after := b.Stats()
	deliveries, slots, receipts := after.Deliveries-before.Deliveries, after.Slots-before.Slots, after.ReceiptsSent-before.ReceiptsSent
	t.Logf("during the transfer: %d deliveries in %d slots, %d receipts", deliveries, slots, receipts)
	if deliveries < 100 || receipts > 2*slots/receiptSlots+2 {
		t.Errorf("%d receipts for %d slots carrying %d deliveries: receipts follow the deliveries", receipts, slots, deliveries)
	}

	gw := nodeIndex(t, n, b.Address().Gateway)
	n.StopNode(gw)
	waitFor(t, 15*time.Second, "the client to lose its gateway", func() bool { return b.link.current() == nil })
	n.StartNode(gw)
	waitFor(t, 30*time.Second, "the grant on the new connection", func() bool {
		s := b.Stats()
		return s.Reconnects > 0 && s.DownstreamInterval == interval
	})
}
