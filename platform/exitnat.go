package platform

import (
	"errors"
	"fmt"
	"net/netip"
)

// ExitTable is the nftables table (family inet) that holds the exit's NAT,
// MSS clamping and exit policy. Nothing else of the ruleset is touched.
const ExitTable = "nymexit"

// ExitConfig describes the exit host's networking for the IP packet router.
type ExitConfig struct {
	// StatePath is the state file that records each change before it is
	// made, for Restore after a crash.
	StatePath string
	// TUN is the router's TUN interface (nymtun0): clients' packets come
	// out of it.
	TUN string
	// ExtraTUNs are further client interfaces under the same rules as TUN:
	// the exit's WireGuard door (nymwg0) beside the router's TUN, one
	// policy for both. Clients behind one never reach clients behind
	// another. Each must exist before StartExitNetworking, for its
	// forwarding sysctl.
	ExtraTUNs []string
	// Uplink is the interface towards the internet; clients' traffic is
	// masqueraded to its address. Required: clients' packets leave by it
	// and no other interface, and while the exit runs the host forwards
	// nothing but clients' traffic between the TUN and the uplink (a
	// neighbour must not use the exit as its router, nor a client reach
	// the networks behind the host's other interfaces).
	Uplink string
	// ClientPrefixes are the ranges clients get their addresses from
	// (10.0.0.0/16, fc00::/112).
	ClientPrefixes []netip.Prefix
	// AllowPrivate are private or local destinations the operator lets
	// clients reach anyway, for tests; everything else in
	// PrivateDestinations is rejected.
	AllowPrivate []netip.Prefix
	// Policy is the operator's accept/reject list, applied after the
	// built-in rejections. Nil accepts what those let through.
	Policy *ExitPolicy
}

// tuns are all the clients' interfaces.
func (c ExitConfig) tuns() []string { return append([]string{c.TUN}, c.ExtraTUNs...) }

func (c ExitConfig) validate() error {
	if c.StatePath == "" {
		return errors.New("no state file path")
	}
	if !validIfname(c.TUN) || !validIfname(c.Uplink) || c.TUN == c.Uplink {
		return fmt.Errorf("bad interface names %q, %q", c.TUN, c.Uplink)
	}
	for _, t := range c.ExtraTUNs {
		if !validIfname(t) || t == c.Uplink || t == c.TUN {
			return fmt.Errorf("bad extra TUN name %q", t)
		}
	}
	if len(c.ClientPrefixes) == 0 {
		return errors.New("no client prefixes")
	}
	for _, p := range append(append([]netip.Prefix(nil), c.ClientPrefixes...), c.AllowPrivate...) {
		if !p.IsValid() {
			return errors.New("invalid prefix")
		}
	}
	return nil
}

// Reasons the exit rejects a client's packet, as keys of the counters that
// ExitNetworking.Rejected reports. Private ranges count under
// "private PREFIX" and policy rules under "policy RULE".
const (
	RejectClientToClient = "client-to-client"
	RejectSMTP           = "smtp" // any of SMTPPorts
	RejectExitHost       = "exit-host"
	RejectNotUplink      = "not-uplink" // clients' packets routed out of another interface than the uplink
	DropUnsolicited      = "unsolicited-to-client"
	DropNotExit          = "forward-not-exit" // forwarded packets neither from nor to a client (a neighbour routing through the exit)
)

// RejectPrivate is the counter key of the rejection of one private range.
func RejectPrivate(p netip.Prefix) string { return "private " + p.String() }

// RejectPolicy is the counter key of one reject rule of the exit policy.
func RejectPolicy(r ExitRule) string { return "policy " + r.String() }

// exitRecord is what StartExitNetworking changed, for undoing it exactly.
type exitRecord struct {
	NetNS   uint64         `json:"netns"`
	Table   string         `json:"table"`
	Sysctls []sysctlRecord `json:"sysctls,omitempty"`
}

// sysctlRecord is a sysctl's value before we changed it.
type sysctlRecord struct {
	Key string `json:"key"` // path under /proc/sys
	Old string `json:"old"`
}
