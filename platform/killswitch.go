package platform

import (
	"errors"
	"fmt"
	"net/netip"
)

// KillSwitchTable is the nftables table (family inet) that holds the kill
// switch. Nothing else of the ruleset is touched.
const KillSwitchTable = "nymvpn"

// Protocol is the transport protocol of an allowed endpoint.
type Protocol uint8

// Transport protocols, by their IP protocol numbers.
const (
	AnyProtocol Protocol = 0 // TCP and UDP
	TCP         Protocol = 6
	UDP         Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case AnyProtocol:
		return "tcp+udp"
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// Endpoint is a remote address the kill switch lets through outside the
// tunnel: the entry gateway, and the directory while connecting.
type Endpoint struct {
	Addr     netip.AddrPort // port 0 allows every port of the address
	Protocol Protocol
}

// KillSwitchRules is what the kill switch lets pass besides loopback.
type KillSwitchRules struct {
	// TUN is the VPN's TUN interface: everything may leave through it, and
	// replies to that traffic may come back. Empty while there is no TUN yet.
	TUN string
	// Allowed are the endpoints reachable outside the tunnel, both ways.
	Allowed []Endpoint
	// Mark, when not zero, lets only packets carrying this firewall mark
	// (SO_MARK: the VPN's own sockets) out to Allowed, and from Allowed
	// only replies on connections so opened. A process of the host cannot
	// use the hole, whichever address it is.
	Mark uint32
	// LAN are the local networks reachable outside the tunnel, each on
	// its link alone (allow-LAN; UplinkLAN finds them). Only private,
	// link-local and unique local prefixes are accepted.
	LAN []LocalNet
	// Exclude is the split tunnel's group (Split.Exclude): its programs'
	// sockets pass, anywhere, and replies to them. Zero: none.
	Exclude Exclude
}

func (r KillSwitchRules) validate() error {
	if len(r.TUN) > 15 {
		return fmt.Errorf("bad TUN name %q", r.TUN)
	}
	for _, e := range r.Allowed {
		if !e.Addr.Addr().IsValid() {
			return errors.New("invalid allowed endpoint")
		}
		switch e.Protocol {
		case AnyProtocol, TCP, UDP:
		default:
			return fmt.Errorf("allowed endpoint %s: unsupported %s", e.Addr, e.Protocol)
		}
	}
	return validateLAN(r.LAN)
}

// Counter is a packet and byte count of an nftables rule.
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// Dropped counts what the kill switch dropped, per direction.
type Dropped struct {
	Output  Counter // sent by this host, outside the tunnel
	Input   Counter // received outside the tunnel
	Forward Counter // routed through this host (containers, VMs), outside the tunnel
}

// killSwitchRecord names the kill switch's table, for Restore.
type killSwitchRecord struct {
	NetNS uint64 `json:"netns"`
	Table string `json:"table"`
}

// KillSwitchRecorded tells whether the state file records a kill switch: one
// an earlier run left in force (RestoreKeepingKillSwitch keeps it), which a
// restarted daemon takes over with EnableKillSwitch.
func KillSwitchRecorded(statePath string) (bool, error) {
	stateMu.Lock()
	defer stateMu.Unlock()
	st, err := loadState(statePath)
	if err != nil {
		return false, fmt.Errorf("kill switch: %w", err)
	}
	return st.KillSwitch != nil, nil
}
