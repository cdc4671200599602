package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Chain names. The base chains never change while the kill switch is on; the
// allow chains are replaced in one transaction on Update, so the drop rules
// (and their counters) stay in force throughout.
const (
	ksOutput      = "output"
	ksInput       = "input"
	ksForward     = "forward"
	ksAllowOut    = "allow_out"
	ksAllowIn     = "allow_in"
	ksAllowFwd    = "allow_fwd"
	ksDropOutput  = "drop-output"
	ksDropInput   = "drop-input"
	ksDropForward = "drop-forward"
)

// KillSwitch drops every packet that is not on the TUN, not on loopback and
// not to or from an allowed endpoint. It stays in force until Disable, also
// when the process exits or crashes: that is its purpose.
type KillSwitch struct {
	statePath string
	ns        *boundNetNS
	nsInode   uint64
	conn      *nftables.Conn
	table     *nftables.Table

	mu     sync.Mutex
	closed bool
}

// EnableKillSwitch installs the kill switch in the calling thread's network
// namespace, atomically replacing one left by an earlier run (so a restarted
// daemon opens no gap).
func EnableKillSwitch(statePath string, rules KillSwitchRules) (*KillSwitch, error) {
	if statePath == "" {
		return nil, errors.New("kill switch: no state file path")
	}
	if err := rules.validate(); err != nil {
		return nil, fmt.Errorf("kill switch: %w", err)
	}
	ns, err := currentNetNS()
	if err != nil {
		return nil, fmt.Errorf("kill switch: %w", err)
	}
	conn, err := newNFTConn(ns)
	if err != nil {
		ns.close()
		return nil, fmt.Errorf("kill switch: %w", err)
	}
	k := &KillSwitch{
		statePath: statePath,
		ns:        ns,
		nsInode:   ns.inode,
		conn:      conn,
		table:     &nftables.Table{Name: KillSwitchTable, Family: nftables.TableFamilyINet},
	}
	err = updateState(statePath, func(st *hostState) error {
		if st.KillSwitch != nil {
			if err := ns.checkRecorded("kill switch", st.KillSwitch.NetNS); err != nil {
				return err
			}
		}
		st.KillSwitch = &killSwitchRecord{NetNS: ns.inode, Table: KillSwitchTable}
		return nil
	})
	if err == nil {
		err = k.install(rules)
	}
	if err != nil {
		k.release()
		return nil, fmt.Errorf("kill switch: %w", err)
	}
	return k, nil
}

// install replaces the table in one transaction: adding it first makes the
// delete succeed when there is none.
func (k *KillSwitch) install(rules KillSwitchRules) error {
	c := k.conn
	t := k.table
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	policyDrop := nftables.ChainPolicyDrop
	base := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &policyDrop})
	}
	output := base(ksOutput, nftables.ChainHookOutput)
	input := base(ksInput, nftables.ChainHookInput)
	forward := base(ksForward, nftables.ChainHookForward)
	for _, name := range []string{ksAllowOut, ksAllowIn, ksAllowFwd} {
		c.AddChain(&nftables.Chain{Name: name, Table: t})
	}

	c.AddRule(rule(t, output, oifname("lo"), one(accept())))
	c.AddRule(rule(t, output, one(jump(ksAllowOut))))
	for _, r := range localLinkRules(t, output, true) {
		c.AddRule(r)
	}
	c.AddRule(commented(rule(t, output, one(&expr.Counter{}, drop())), ksDropOutput))

	c.AddRule(rule(t, input, iifname("lo"), one(accept())))
	c.AddRule(rule(t, input, one(jump(ksAllowIn))))
	for _, r := range localLinkRules(t, input, false) {
		c.AddRule(r)
	}
	c.AddRule(commented(rule(t, input, one(&expr.Counter{}, drop())), ksDropInput))

	c.AddRule(rule(t, forward, one(jump(ksAllowFwd))))
	c.AddRule(commented(rule(t, forward, one(&expr.Counter{}, drop())), ksDropForward))

	k.addAllowRules(rules)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install table %s: %w", KillSwitchTable, err)
	}
	return nil
}

// localLinkRules let through what keeps the host on its local link, and no
// further: IPv6 neighbour and router discovery (without it the gateway's
// IPv6 address becomes unreachable) only to link-local and multicast
// addresses with hop limit 255, and DHCP requests only to the broadcast
// address (DHCPv4) or the link-local servers' addresses (DHCPv6). A unicast
// renewal to a DHCPv4 server is dropped; the client then rebinds by
// broadcast, which passes. Inbound, hop limit 255 proves a neighbour
// discovery message came from the link.
func localLinkRules(t *nftables.Table, c *nftables.Chain, out bool) []*nftables.Rule {
	var rules []*nftables.Rule
	linkLocal := netip.MustParsePrefix("fe80::/10")
	linkMulticast := netip.MustParsePrefix("ff02::/16")
	for _, typ := range []byte{133, 134, 135, 136, 137} { // RS, RA, NS, NA, redirect
		nd := slices.Concat(matchNfproto(false), matchICMPv6Type(typ), matchHopLimit255())
		if out {
			for _, dst := range []netip.Prefix{linkLocal, linkMulticast} {
				rules = append(rules, rule(t, c, nd, matchAddr(dst, true), one(accept())))
			}
		} else {
			rules = append(rules, rule(t, c, nd, one(accept())))
		}
	}
	udp := matchL4proto(unix.IPPROTO_UDP)
	if out {
		rules = append(rules,
			rule(t, c, matchAddr(netip.MustParsePrefix("255.255.255.255/32"), true), udp,
				matchPorts(68, 68, false), matchPorts(67, 67, true), one(accept())))
		for _, dst := range []netip.Prefix{linkLocal, netip.MustParsePrefix("ff02::1:2/128")} {
			rules = append(rules, rule(t, c, matchAddr(dst, true), udp,
				matchPorts(546, 546, false), matchPorts(547, 547, true), one(accept())))
		}
	} else {
		rules = append(rules,
			rule(t, c, matchNfproto(true), udp, matchPorts(67, 67, false), matchPorts(68, 68, true), one(accept())),
			rule(t, c, matchAddr(linkLocal, false), udp, matchPorts(547, 547, false), matchPorts(546, 546, true), one(accept())))
	}
	return rules
}

// addAllowRules queues the contents of the allow chains.
func (k *KillSwitch) addAllowRules(rules KillSwitchRules) {
	c, t := k.conn, k.table
	out := &nftables.Chain{Name: ksAllowOut, Table: t}
	in := &nftables.Chain{Name: ksAllowIn, Table: t}
	fwd := &nftables.Chain{Name: ksAllowFwd, Table: t}
	if rules.TUN != "" {
		c.AddRule(rule(t, out, oifname(rules.TUN), one(accept())))
		c.AddRule(rule(t, in, iifname(rules.TUN), matchCtEstablished(), one(accept())))
		c.AddRule(rule(t, fwd, oifname(rules.TUN), one(accept())))
		c.AddRule(rule(t, fwd, iifname(rules.TUN), matchCtEstablished(), one(accept())))
	}
	addExcludeRules(c, t, out, in, rules.Exclude)
	for _, e := range rules.Allowed {
		protos := []Protocol{e.Protocol}
		if e.Protocol == AnyProtocol && e.Addr.Port() != 0 {
			protos = []Protocol{TCP, UDP}
		}
		for _, p := range protos {
			if rules.Mark != 0 {
				c.AddRule(rule(t, out, matchMark(rules.Mark), endpointMatch(e, p, true), one(accept())))
				c.AddRule(rule(t, in, endpointMatch(e, p, false), matchCtEstablished(), one(accept())))
				continue
			}
			c.AddRule(rule(t, out, endpointMatch(e, p, true), one(accept())))
			c.AddRule(rule(t, in, endpointMatch(e, p, false), one(accept())))
		}
	}
	addLANRules(c, t, out, in, rules.LAN)
}

// endpointMatch is `ip daddr A tcp dport P` (outgoing) or `ip saddr A tcp
// sport P` (incoming); without protocol and port it matches the address.
func endpointMatch(e Endpoint, p Protocol, out bool) []expr.Any {
	addr := e.Addr.Addr().Unmap()
	m := matchAddr(hostPrefix(addr), out)
	if p != AnyProtocol {
		m = append(m, matchL4proto(byte(p))...)
	}
	if port := e.Addr.Port(); port != 0 {
		m = append(m, matchPorts(port, port, out)...)
	}
	return m
}

// Update replaces what the kill switch lets through (another gateway on
// reconnect, the directory no longer needed once connected) in one
// transaction: no packet ever sees a state between the old and the new rules.
func (k *KillSwitch) Update(rules KillSwitchRules) error {
	if err := rules.validate(); err != nil {
		return fmt.Errorf("kill switch: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errors.New("kill switch: closed")
	}
	for _, name := range []string{ksAllowOut, ksAllowIn, ksAllowFwd} {
		k.conn.FlushChain(&nftables.Chain{Name: name, Table: k.table})
	}
	k.addAllowRules(rules)
	if err := k.conn.Flush(); err != nil {
		return fmt.Errorf("kill switch: update: %w", err)
	}
	return nil
}

// Dropped reports how much the kill switch has dropped since it was enabled.
func (k *KillSwitch) Dropped() (Dropped, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return Dropped{}, errors.New("kill switch: closed")
	}
	var d Dropped
	for _, c := range []struct {
		chain, comment string
		into           *Counter
	}{
		{ksOutput, ksDropOutput, &d.Output},
		{ksInput, ksDropInput, &d.Input},
		{ksForward, ksDropForward, &d.Forward},
	} {
		counters, err := countersByComment(k.conn, k.table, c.chain)
		if err != nil {
			return Dropped{}, fmt.Errorf("kill switch: %w", err)
		}
		*c.into = counters[c.comment]
	}
	return d, nil
}

// Disable removes the kill switch: only on an explicit disconnect.
func (k *KillSwitch) Disable() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errors.New("kill switch: closed")
	}
	if err := deleteTable(k.conn, k.table); err != nil {
		return fmt.Errorf("kill switch: remove table: %w", err)
	}
	err := updateState(k.statePath, func(st *hostState) error {
		if st.KillSwitch != nil && st.KillSwitch.NetNS == k.nsInode {
			st.KillSwitch = nil
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kill switch: %w", err)
	}
	k.closed = true
	k.release()
	return nil
}

// Close lets go of the kill switch without removing it: the rules stay in
// force (and in the state file) until Disable or Restore.
func (k *KillSwitch) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		k.closed = true
		k.release()
	}
	return nil
}

func (k *KillSwitch) release() {
	k.conn.CloseLasting()
	k.ns.close()
}

// restoreKillSwitch removes a kill switch left by a crashed run, in the
// calling thread's namespace.
func restoreKillSwitch(rec *killSwitchRecord) error {
	return removeTableIn("kill switch", rec.NetNS, rec.Table)
}

// removeTableIn deletes our inet table name in the calling thread's network
// namespace, after checking it is the namespace the table was recorded in.
func removeTableIn(what string, recordedNS uint64, name string) error {
	ns, err := currentNetNS()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer ns.close()
	if err := ns.checkRecorded(what, recordedNS); err != nil {
		return err
	}
	conn, err := newNFTConn(ns)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer conn.CloseLasting()
	if err := deleteTable(conn, &nftables.Table{Name: name, Family: nftables.TableFamilyINet}); err != nil {
		return fmt.Errorf("%s: remove table %s: %w", what, name, err)
	}
	return nil
}
