package vpn

import (
	"fmt"
	"time"

	"github.com/nym-go/nym/ipr"
)

// State is where a tunnel is in its life.
type State int

// States.
const (
	StateConnecting   State = iota // first handshake
	StateConnected                 // pumping packets
	StateReconnecting              // the path died; dialing again
	StateClosed                    // Run returned
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler, for status JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Stats is a snapshot of a tunnel's counters. Up is towards the exit.
type Stats struct {
	State     State
	Addrs     ipr.AddrPair
	MTU       int
	Connected time.Time     // when the session was first granted
	Uptime    time.Duration // since Connected
	// Profile is the mixing profile's name; IdleCost says in plain words
	// what it spends on cover while idle (Profile.IdleCost).
	Profile, IdleCost string

	PacketsUp, BytesUp uint64 // IP packets sent in bundles
	BundlesUp          uint64 // DataUp messages sent (SURB-only ones included)
	// What the DataUps carried: SURBs alone, or data beside SURBs (the
	// rest, BundlesUp less both, carried data alone).
	BundlesUpSURBsOnly, BundlesUpWithSURBs uint64
	// The mixnet client's packets: real ones (the DataUps, pings, SURB
	// requests and grants) and loop cover, of both its streams.
	SlotsReal, SlotsCover  uint64
	PacketsDown, BytesDown uint64 // IP packets written to the TUN
	BundlesDown            uint64 // DataDown messages received

	QueuedUp          int    // upstream packets waiting for a slot now
	QueueDropsSojourn uint64 // upstream packets CoDel dropped
	QueueDropsFull    uint64 // upstream packets the memory guard refused
	TooBig            uint64 // upstream packets larger than one bundle
	MalformedDown     uint64 // bad replies or bundle entries
	TUNWriteErrors    uint64

	SURBsSent        uint64 // reply SURBs given to the exit
	SURBsUsed        uint64 // replies received: SURBs the exit spent
	SURBsOutstanding int    // our estimate of SURBs the exit holds
	SURBResets       uint64 // times that estimate was found too high
	Backlog          int    // the exit's last reported backlog

	Reorder ipr.ReorderStats // downstream resequencing

	Pings, Pongs uint64
	LastRTT      time.Duration // of the last pong
	Reconnects   uint64
}

// UnmarshalText reads what MarshalText wrote, so `nymvpn status` can decode
// the daemon's answer.
func (s *State) UnmarshalText(b []byte) error {
	for c := StateConnecting; c <= StateClosed; c++ {
		if c.String() == string(b) {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("vpn: unknown state %q", b)
}
