package vpn

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/tun"
)

// A user's stack whose TUN has a larger MTU than the tunnel (here 4000
// against 1300) sends TCP segments too big for a bundle. readTUN answers
// them with ICMP "fragmentation needed"; the stack lowers its MSS and the
// transfer completes, where without the errors it would stall.
//
// Two gVisor stacks stand for the user and the internet: readTUN reads
// the user's, its queue feeds the internet's, and the internet's packets
// go straight back.
func TestReadTUNAnswersTooBig(t *testing.T) {
	leakcheck.Check(t)
	userAddr, hostAddr := netip.MustParseAddr("10.0.3.4"), netip.MustParseAddr("192.0.2.1")
	userDev, user, err := tun.CreateNetstack([]netip.Addr{userAddr}, nil, 4000)
	if err != nil {
		t.Fatal(err)
	}
	hostDev, host, err := tun.CreateNetstack([]netip.Addr{hostAddr}, nil, 4000)
	if err != nil {
		t.Fatal(err)
	}
	tn := &Tunnel{
		log: quietLogger(),
		mtu: 1300,
		// CoDel must not drop here.
		cfg: Config{QueueTarget: time.Second, QueueInterval: 10 * time.Second, MaxQueuePackets: 1 << 16, MaxQueueBytes: 4 << 20},
	}
	var err2 error
	if tn.up, err2 = newUpstream(tn); err2 != nil {
		t.Fatal(err2)
	}
	ready := make(chanWaker, 1)
	tn.up.setStream(ready)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { tn.readTUN(userDev) })
	wg.Go(func() { // the tunnel, upstream: readTUN's queue to the internet
		for {
			select {
			case <-ctx.Done():
				return
			case <-ready:
			}
			for {
				tn.up.mu.Lock()
				pkt, _, ok := tn.up.q.PopIf(time.Now(), nil)
				if ok {
					if len(pkt) > tn.mtu {
						t.Errorf("a %d-byte packet passed readTUN", len(pkt))
					}
					hostDev.Write([][]byte{pkt})
					tn.up.putBuf(pkt)
				}
				tn.up.mu.Unlock()
				if !ok {
					break
				}
			}
		}
	})
	wg.Go(func() { // downstream, unrestricted
		bufs, sizes := tun.NewBatch(hostDev)
		for {
			n, err := hostDev.Read(bufs, sizes)
			pkts := make([][]byte, n)
			for i := range n {
				pkts[i] = bufs[i][:sizes[i]]
			}
			userDev.Write(pkts)
			if err != nil && ctx.Err() != nil {
				return
			}
		}
	})
	defer func() {
		cancel()
		userDev.Close()
		hostDev.Close()
		wg.Wait()
	}()

	// The user uploads; the host reads it all and echoes a digest.
	data := make([]byte, 256<<10)
	rand.Read(data)
	ln, err := host.ListenTCPAddrPort(netip.AddrPortFrom(hostAddr, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	defer dcancel()
	c, err := user.DialContext(dctx, "tcp", "192.0.2.1:80")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("upload: %v (%d too big)", err, tn.tooBig.Load())
	}
	c.Close()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			t.Fatalf("host got %d bytes, want the %d sent", len(b), len(data))
		}
	case <-deadline.C:
		t.Fatalf("upload stalled after %d too-big packets", tn.tooBig.Load())
	}
	if tn.tooBig.Load() == 0 {
		t.Fatal("no packet was too big: the test tests nothing")
	}
	t.Logf("%d packets too big before the stack lowered its MSS", tn.tooBig.Load())
}
