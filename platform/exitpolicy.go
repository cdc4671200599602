package platform

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxExitPolicyRules bounds a policy: each rule becomes up to two nftables
// rules that every new flow from a client walks through.
const maxExitPolicyRules = 4096

// ExitPolicy is an operator's list of accept and reject rules in Tor's
// ExitPolicy syntax, for example:
//
//	accept 198.51.100.0/24:80-443
//	reject [2001:db8::]/32:*
//	reject *:25, reject *:*
//
// The first rule that matches a packet decides; a packet no rule matches is
// accepted (end the list with `reject *:*` for an allow list). Rules with
// ports match TCP and UDP only; rules for every port (`*`) match every
// protocol. The exit's built-in rejections (private ranges, the exit host,
// other clients, SMTP) apply before the policy.
type ExitPolicy struct {
	Rules []ExitRule
}

// ExitRule is one line of an ExitPolicy.
type ExitRule struct {
	Accept bool
	// Network is the destination range. The zero Prefix means every
	// address of both families (`*`); 0.0.0.0/0 is `*4`, ::/0 is `*6`.
	Network netip.Prefix
	// FirstPort and LastPort bound the destination ports; 1-65535 (`*`)
	// means every port and every protocol.
	FirstPort, LastPort uint16
}

// AllPorts reports whether the rule covers every port (and so every
// protocol, ICMP included).
func (r ExitRule) AllPorts() bool { return r.FirstPort <= 1 && r.LastPort == 65535 }

// String formats the rule in the syntax ParseExitPolicy reads.
func (r ExitRule) String() string {
	var b strings.Builder
	if r.Accept {
		b.WriteString("accept ")
	} else {
		b.WriteString("reject ")
	}
	n := r.Network
	switch {
	case !n.IsValid():
		b.WriteString("*")
	case n.Bits() == 0 && n.Addr().Is4():
		b.WriteString("*4")
	case n.Bits() == 0:
		b.WriteString("*6")
	case n.Addr().Is4():
		b.WriteString(n.Addr().String())
		if n.Bits() < 32 {
			fmt.Fprintf(&b, "/%d", n.Bits())
		}
	default:
		fmt.Fprintf(&b, "[%s]", n.Addr())
		if n.Bits() < 128 {
			fmt.Fprintf(&b, "/%d", n.Bits())
		}
	}
	b.WriteByte(':')
	switch {
	case r.AllPorts():
		b.WriteString("*")
	case r.FirstPort == r.LastPort:
		fmt.Fprintf(&b, "%d", r.FirstPort)
	default:
		fmt.Fprintf(&b, "%d-%d", r.FirstPort, r.LastPort)
	}
	return b.String()
}

// String formats the policy one rule a line; ParseExitPolicy reads it back
// to an equal policy.
func (p *ExitPolicy) String() string {
	var b strings.Builder
	for _, r := range p.Rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Allows reports what the policy decides for a packet to dst with IP
// protocol proto (6 TCP, 17 UDP, ...) and destination port (ignored for
// protocols without ports). It is the reference for the compiled nftables
// rules.
func (p *ExitPolicy) Allows(dst netip.Addr, proto uint8, port uint16) bool {
	for _, r := range p.Rules {
		if r.Network.IsValid() && !r.Network.Contains(dst) {
			continue
		}
		if !r.AllPorts() {
			if proto != uint8(TCP) && proto != uint8(UDP) {
				continue
			}
			if port < r.FirstPort || port > r.LastPort {
				continue
			}
		}
		return r.Accept
	}
	return true
}

// ParseExitPolicy reads rules separated by newlines or commas; `#` starts a
// comment. Keywords are accept, reject, and accept6 and reject6 (which apply
// to IPv6 only). Addresses are `*`, `*4`, `*6`, an IPv4 address or an IPv6
// address in brackets, each with an optional /bits; ports are `*`, N or N-M
// and default to `*`. Host bits below the mask are cleared, as Tor does.
func ParseExitPolicy(text string) (*ExitPolicy, error) {
	p := &ExitPolicy{}
	for lineNo, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, entry := range strings.Split(line, ",") {
			if strings.TrimSpace(entry) == "" {
				continue
			}
			r, err := parseExitRule(entry)
			if err != nil {
				return nil, fmt.Errorf("exit policy line %d: %q: %w", lineNo+1, strings.TrimSpace(entry), err)
			}
			if len(p.Rules) == maxExitPolicyRules {
				return nil, fmt.Errorf("exit policy: more than %d rules", maxExitPolicyRules)
			}
			p.Rules = append(p.Rules, r)
		}
	}
	return p, nil
}

func parseExitRule(entry string) (ExitRule, error) {
	fields := strings.Fields(entry)
	if len(fields) != 2 {
		return ExitRule{}, fmt.Errorf("want \"accept|reject ADDR[/BITS][:PORTS]\"")
	}
	var r ExitRule
	only6 := false
	switch strings.ToLower(fields[0]) {
	case "accept":
		r.Accept = true
	case "reject":
	case "accept6":
		r.Accept, only6 = true, true
	case "reject6":
		only6 = true
	default:
		return ExitRule{}, fmt.Errorf("unknown keyword %q", fields[0])
	}
	addr, ports, err := splitAddrPorts(fields[1])
	if err != nil {
		return ExitRule{}, err
	}
	if r.Network, err = parsePolicyAddr(addr, only6); err != nil {
		return ExitRule{}, err
	}
	if r.FirstPort, r.LastPort, err = parsePolicyPorts(ports); err != nil {
		return ExitRule{}, err
	}
	return r, nil
}

// splitAddrPorts splits "ADDR[/BITS][:PORTS]"; an IPv6 address is in
// brackets, so the port separator is the first colon outside them.
func splitAddrPorts(s string) (addr, ports string, err error) {
	rest := s
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", fmt.Errorf("missing ] in %q", s)
		}
		rest = s[end+1:]
		addr = s[:end+1]
		if i := strings.IndexByte(rest, ':'); i >= 0 {
			return addr + rest[:i], rest[i+1:], nil
		}
		return s, "*", nil
	}
	i := strings.IndexByte(rest, ':')
	if i < 0 {
		return s, "*", nil
	}
	if strings.Contains(rest[i+1:], ":") {
		return "", "", fmt.Errorf("%q: IPv6 addresses need brackets", s)
	}
	return s[:i], s[i+1:], nil
}

func parsePolicyAddr(s string, only6 bool) (netip.Prefix, error) {
	switch s {
	case "*":
		if only6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0), nil
		}
		return netip.Prefix{}, nil
	case "*4":
		if only6 {
			return netip.Prefix{}, fmt.Errorf("*4 in an IPv6-only rule")
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0), nil
	case "*6":
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0), nil
	}
	host, bitsText, hasBits := strings.Cut(s, "/")
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") && len(host) >= 2
	if bracketed {
		host = host[1 : len(host)-1]
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	switch {
	case a.Is4() && bracketed:
		return netip.Prefix{}, fmt.Errorf("%q: only IPv6 addresses go in brackets", s)
	case a.Is6() && !bracketed:
		return netip.Prefix{}, fmt.Errorf("%q: IPv6 addresses need brackets", s)
	case a.Is4() && only6:
		return netip.Prefix{}, fmt.Errorf("%q: IPv4 address in an IPv6-only rule", s)
	}
	bits := a.BitLen()
	if hasBits {
		bits, err = parseDecimal(bitsText, 0, a.BitLen())
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad mask in %q: %w", s, err)
		}
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

func parsePolicyPorts(s string) (first, last uint16, err error) {
	if s == "*" {
		return 1, 65535, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	first16, err := parseDecimal(lo, 1, 65535)
	if err != nil {
		return 0, 0, fmt.Errorf("bad port %q: %w", s, err)
	}
	last16 := first16
	if isRange {
		if last16, err = parseDecimal(hi, 1, 65535); err != nil {
			return 0, 0, fmt.Errorf("bad port %q: %w", s, err)
		}
		if last16 < first16 {
			return 0, 0, fmt.Errorf("bad port range %q", s)
		}
	}
	return uint16(first16), uint16(last16), nil
}

// parseDecimal accepts plain digits only (no sign, no spaces) within
// [min, max].
func parseDecimal(s string, min, max int) (int, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%q is not in %d-%d", s, min, max)
	}
	return n, nil
}
