package router

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/testpkt"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/tun/ippkt"
)

// A stream that starves (data queued, no SURB to send it with) takes nothing
// from the session's queue: the packets wait there, where CoDel sees them
// and drops those that waited too long once pulling resumes. The first
// response pulled after the starvation asks the client for more SURBs, at
// most once per InfoInterval.
func TestStarvedStreamKeepsPacketsQueuedAndAsksForSURBs(t *testing.T) {
	e := newTestExit(t, nil)
	c := e.client(1)
	c.mustConnect()
	from := netip.MustParseAddr("192.0.2.1")
	for range 20 {
		e.r.FromTUN([][]byte{testpkt.IPv4(t, from, c.addrs.V4, ippkt.ProtoUDP, 1, make([]byte, 972))})
	}
	e.stream(c.key).d.Starved()
	// No SURB for a while: the queue stands, nothing leaves it.
	e.clock.advance(2 * time.Second)
	if s := e.r.Stats(); s.Starved != 1 || s.PacketsDown != 0 || s.Drops[DropSojourn] != 0 {
		t.Fatalf("while starved: %+v", s)
	}
	// A SURB: the client hears that it must send more.
	if resp, ok := c.pullOne(); !ok {
		t.Fatal("nothing pulled after the starvation")
	} else if !isLowSURBs(resp) {
		t.Fatalf("first response after starving %+v, want Info LowSURBs", resp)
	}
	// Starving again within InfoInterval costs the client no other Info.
	e.stream(c.key).d.Starved()
	if resp, ok := c.pullOne(); !ok {
		t.Fatal("nothing pulled")
	} else if _, isData := resp.(*ipr.DataDown); !isData {
		t.Fatalf("pulled %+v within InfoInterval, want Data", resp)
	}
	// Then the data, one bundle per SURB as they come, through CoDel,
	// which drops what stood too long.
	got := []ipr.Response{nil} // the one pulled above
	for {
		e.clock.advance(50 * time.Millisecond)
		resp, ok := c.pullOne()
		if !ok {
			break
		}
		got = append(got, resp)
	}
	s := e.r.Stats()
	if len(got) == 0 || s.Drops[DropSojourn] == 0 || s.PacketsDown+s.Drops[DropSojourn] != 20 || s.LowSURBInfos != 1 {
		t.Fatalf("%d bundles after the SURBs came, stats %+v; want some sent, the stale dropped, one Info", len(got), s)
	}
	// Later, it does.
	e.clock.advance(DefaultInfoInterval)
	e.r.FromTUN([][]byte{testpkt.IPv4(t, from, c.addrs.V4, ippkt.ProtoUDP, 1, []byte("y"))})
	e.stream(c.key).d.Starved()
	if resp, _ := c.pullOne(); !isLowSURBs(resp) {
		t.Fatalf("pulled %+v after InfoInterval, want Info", resp)
	}
}

// A transport that offers less room than PayloadCapacity promised still
// gets what fits: the queue must not wedge on it.
func TestPullIntoSmallerBuffer(t *testing.T) {
	e := newTestExit(t, nil)
	c := e.client(1)
	c.mustConnect()
	from := netip.MustParseAddr("192.0.2.1")
	small := testpkt.IPv4(t, from, c.addrs.V4, ippkt.ProtoUDP, 1, []byte("small"))
	e.r.FromTUN([][]byte{small, small})
	room := ipr.DataDownOverhead + ipr.LengthPrefixSize + len(small)
	b, ok := e.stream(c.key).d.Pull(make([]byte, 0, room))
	if !ok || len(b) > room {
		t.Fatalf("pull into %d bytes: %d bytes, %v", room, len(b), ok)
	}
	if got := c.pull(); len(got) != 1 {
		t.Fatalf("%d bundles left, want the other packet's", len(got))
	}
}

func isLowSURBs(r ipr.Response) bool {
	info, ok := r.(*ipr.Info)
	return ok && info.Code == ipr.InfoLowSURBs
}

// The reply pace a client announces reaches its session's stream, bounded;
// a client that announces none gets none, and a session moved to a new
// sender tag takes the pace its new Connect announces.
func TestReplyIntervalReachesTheStream(t *testing.T) {
	e := newTestExit(t, nil)
	for i, tc := range []struct{ asked, want time.Duration }{
		{0, 0},
		{8 * time.Millisecond, 8 * time.Millisecond},
		{time.Microsecond, MinReplyInterval},
		{time.Hour, MaxReplyInterval},
	} {
		c := e.client(byte(i + 1))
		c.send(&ipr.Connect{RequestID: 1, Nonce: c.nonce, ReplyInterval: tc.asked})
		if _, ok := e.lastResponse(c.key).(*ipr.ConnectOK); !ok {
			t.Fatalf("asking %v: not connected", tc.asked)
		}
		if got := e.stream(c.key).d.ReplyInterval(); got != tc.want {
			t.Errorf("asked %v: the stream's pace is %v, want %v", tc.asked, got, tc.want)
		}
	}
	moved := e.client(2) // the session that asked 8 ms, under a new tag
	moved.key[1] = 0x77
	moved.send(&ipr.Connect{RequestID: 2, Nonce: moved.nonce, ReplyInterval: 12 * time.Millisecond})
	if _, ok := e.lastResponse(moved.key).(*ipr.ConnectOK); !ok {
		t.Fatal("the moved session did not connect")
	}
	if got := e.stream(moved.key).d.ReplyInterval(); got != 12*time.Millisecond {
		t.Errorf("moved session: the stream's pace is %v, want 12ms", got)
	}
}
