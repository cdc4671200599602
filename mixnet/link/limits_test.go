package link

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
)

// fromLoopback dials from a chosen loopback address, so one test can play
// several hosts: Linux routes all of 127.0.0.0/8 to lo.
func fromLoopback(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.DialContext
}

// TestSilentConnectionsDoNotBlockPeer is the attack of issue 10: one host
// opens many TCP connections to a mix port and never sends a byte. Before
// per-source handshake caps they took every MaxConns slot for the whole
// handshake timeout, and a topology peer's link was refused.
func TestSilentConnectionsDoNotBlockPeer(t *testing.T) {
	leakcheck.Check(t)
	var got sink
	const maxConns, silent = 16, 64
	ts := startServer(t, "127.0.0.1:0", ServerConfig{
		// Timeouts far beyond the test, so only the caps can help.
		Config:              Config{Handler: got.handle, HandshakeTimeout: time.Minute},
		FirstMessageTimeout: time.Minute,
		MaxConns:            maxConns,
	})
	st := ts.Stats()
	attacker := fromLoopback("127.0.0.2")
	for range silent {
		nc, err := attacker(context.Background(), "tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
	}
	// Every connection the server refused, whichever cap refused it: the
	// server has then seen all of them.
	waitFor(t, "the silent connections to be accepted or refused", func() bool {
		return st.ConnsRejected.Load()+st.ConnsRejectedPerIP.Load() >= silent-maxConns
	})

	peer := dialTest(t, ts, Config{DialContext: fromLoopback("127.0.0.1")})
	if !peer.Send(Frame{Kind: KindPacket, Payload: []byte("from a topology peer")}) {
		t.Fatal("peer could not queue a frame")
	}
	got.waitN(t, 1)
	if n := st.ConnsRejectedPerIP.Load(); n < silent-DefaultMaxHandshakesPerIP {
		t.Errorf("ConnsRejectedPerIP = %d, want at least %d", n, silent-DefaultMaxHandshakesPerIP)
	}
}

// TestSilentConnectionClosedAfterFirstMessage checks that a connection
// that never starts its handshake loses its slot after FirstMessageTimeout,
// not the whole HandshakeTimeout.
func TestSilentConnectionClosedAfterFirstMessage(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, "127.0.0.1:0", ServerConfig{
		Config:              Config{HandshakeTimeout: time.Hour},
		FirstMessageTimeout: 100 * time.Millisecond,
	})
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	expectClosedByPeer(t, nc)
	waitFor(t, "the handshake failure to be counted", func() bool { return ts.Stats().HandshakeFails.Load() == 1 })

	// An honest peer, which sends its first message at once, still gets in.
	c := dialTest(t, ts, Config{})
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
}

// TestMaxConnsPerIP refuses established links past the per-source cap and
// takes links again once one has gone.
func TestMaxConnsPerIP(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, "127.0.0.1:0", ServerConfig{MaxConnsPerIP: 2})
	st := ts.Stats()
	a := dialTest(t, ts, Config{})
	dialTest(t, ts, Config{})
	waitFor(t, "two links", func() bool { return st.ConnsOpened.Load() == 2 })
	third := dialTest(t, ts, Config{})
	select {
	case <-third.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the third link from one address was not closed")
	}
	if n := st.ConnsRejectedPerIP.Load(); n != 1 {
		t.Errorf("ConnsRejectedPerIP = %d, want 1", n)
	}
	// Another source is not affected.
	other := dialTest(t, ts, Config{DialContext: fromLoopback("127.0.0.3")})
	waitFor(t, "a link from another address", func() bool { return st.ConnsOpened.Load() == 3 })
	if other.Err() != nil {
		t.Fatal(other.Err())
	}
	// Once a link ends its slot is freed, a moment after the server counts
	// it closed: dial until a link is accepted rather than refused.
	a.Close()
	waitFor(t, "a link once a slot is free", func() bool {
		before := st.ConnsOpened.Load()
		c := dialTest(t, ts, Config{})
		for st.ConnsOpened.Load() == before {
			select {
			case <-c.Done():
				return false // refused: the slot was not free yet
			case <-time.After(time.Millisecond):
			}
		}
		return true
	})
}

// TestIdleTimeout closes a link on which nothing arrives, with ErrIdle.
func TestIdleTimeout(t *testing.T) {
	leakcheck.Check(t)
	closed := make(chan error, 1)
	ts := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{
		IdleTimeout: 100 * time.Millisecond,
		OnClose:     func(_ *Conn, err error) { closed <- err },
	}})
	c := dialTest(t, ts, Config{})
	select {
	case err := <-closed:
		if !errors.Is(err, ErrIdle) {
			t.Fatalf("closed with %v, want ErrIdle", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("idle link not closed")
	}
	<-c.Done()
	if n := ts.Stats().IdleClosed.Load(); n != 1 {
		t.Errorf("IdleClosed = %d, want 1", n)
	}
}

// TestMaxHandshakesFromRaisesOneSource: MaxHandshakesFrom gives one source
// (a gateway relaying many clients' registrations) a bound of its own,
// while every other source keeps MaxHandshakesPerIP.
func TestMaxHandshakesFromRaisesOneSource(t *testing.T) {
	leakcheck.Check(t)
	const flood = DefaultMaxHandshakesPerIP + 12
	relay := netip.MustParsePrefix("127.0.0.3/32")
	ts := startServer(t, "127.0.0.1:0", ServerConfig{
		Config:              Config{HandshakeTimeout: time.Minute},
		FirstMessageTimeout: time.Minute,
		MaxHandshakesFrom: func(src netip.Prefix) int {
			if src == relay {
				return 2 * flood
			}
			return 0
		},
	})
	st := ts.Stats()
	silent := func(from string, n int) {
		for range n {
			nc, err := fromLoopback(from)(context.Background(), "tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
		}
	}
	silent("127.0.0.2", flood)
	waitFor(t, "the flood past the per-address bound to be refused", func() bool {
		return st.ConnsRejectedPerIP.Load() == flood-DefaultMaxHandshakesPerIP
	})
	// The relay's connections, then one more from the flooding address: the
	// server accepts in order, so once that one is refused it has seen the
	// relay's too.
	silent("127.0.0.3", flood)
	silent("127.0.0.2", 1)
	waitFor(t, "one more from the flooding address to be refused", func() bool {
		return st.ConnsRejectedPerIP.Load() >= flood-DefaultMaxHandshakesPerIP+1
	})
	if n := st.ConnsRejectedPerIP.Load(); n != flood-DefaultMaxHandshakesPerIP+1 {
		t.Fatalf("ConnsRejectedPerIP = %d, want %d: the raised source was refused too", n, flood-DefaultMaxHandshakesPerIP+1)
	}
}
