package platform

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Chain names of the exit table.
const (
	exPostrouting = "postrouting"  // masquerade
	exMangle      = "mangle_fwd"   // MSS clamping
	exForward     = "forward"      // hands clients' packets to fromClients
	exInput       = "input"        // clients may not reach the exit host
	exFromClients = "from_clients" // built-in rejections
	exPolicy      = "policy"       // the operator's list, replaced by SetPolicy
	exRefuse      = "refuse"       // rejects so the client learns at once
)

// exitSysctl is a sysctl the exit sets while it runs.
type exitSysctl struct{ key, value string }

// exitSysctls are set for the exit, in this order, and put back in the
// reverse order on Close. IPv4 forwards what arrives on an interface whose
// own forwarding flag is on, so only the TUN (clients' packets) and the
// uplink (the replies) get it, not the host's other interfaces. Linux
// forwards IPv6 only with the global flag on, whatever the interface's own
// (per-interface force_forwarding is too new to rely on): the forward chain
// confines it to the TUN and the uplink, and accept_ra=2 keeps the uplink's
// IPv6 autoconfiguration, which forwarding would otherwise turn off. The
// uplink's accept_ra goes first so that it never lapses.
func exitSysctls(tuns []string, uplink string) []exitSysctl {
	s := []exitSysctl{
		{"net/ipv6/conf/" + uplink + "/accept_ra", "2"},
		{"net/ipv6/conf/all/forwarding", "1"},
	}
	for _, tun := range tuns {
		s = append(s, exitSysctl{"net/ipv4/conf/" + tun + "/forwarding", "1"})
	}
	return append(s, exitSysctl{"net/ipv4/conf/" + uplink + "/forwarding", "1"})
}

// exitSysctlValue is the value the exit sets key to.
func exitSysctlValue(key string) string {
	if strings.HasSuffix(key, "/accept_ra") {
		return "2"
	}
	return "1"
}

// ExitNetworking is the exit host's forwarding, NAT and exit policy.
type ExitNetworking struct {
	statePath string
	ns        *boundNetNS
	nsInode   uint64
	conn      *nftables.Conn
	table     *nftables.Table
	sysctls   []sysctlRecord // the values before we changed them
	recorded  bool           // the exit record is in the state file

	mu      sync.Mutex
	stopped bool
}

// StartExitNetworking installs the exit's table and turns forwarding on, in
// the calling thread's network namespace: masquerade of the clients' ranges
// out of the uplink, MSS clamping of forwarded SYNs to the route's MTU, and
// rejection (ICMP administratively prohibited, or a TCP reset) of what
// clients may not reach. The table goes in before forwarding is switched on,
// so nothing is forwarded unfiltered.
func StartExitNetworking(cfg ExitConfig) (*ExitNetworking, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("exit networking: %w", err)
	}
	ns, err := currentNetNS()
	if err != nil {
		return nil, fmt.Errorf("exit networking: %w", err)
	}
	conn, err := newNFTConn(ns)
	if err != nil {
		ns.close()
		return nil, fmt.Errorf("exit networking: %w", err)
	}
	e := &ExitNetworking{
		statePath: cfg.StatePath,
		ns:        ns,
		nsInode:   ns.inode,
		conn:      conn,
		table:     &nftables.Table{Name: ExitTable, Family: nftables.TableFamilyINet},
	}
	if err := e.start(cfg); err != nil {
		var undoErr error
		if e.recorded {
			undoErr = e.Close()
		}
		e.release()
		return nil, fmt.Errorf("exit networking: %w", errors.Join(err, undoErr))
	}
	return e, nil
}

func (e *ExitNetworking) start(cfg ExitConfig) error {
	var current []sysctlRecord
	err := e.ns.run(func() error {
		for _, sc := range exitSysctls(cfg.tuns(), cfg.Uplink) {
			v, err := readSysctl(sc.key)
			if errors.Is(err, unix.ENOENT) {
				continue // IPv6 disabled, or no such interface: nothing to forward there
			}
			if err != nil {
				return err
			}
			current = append(current, sysctlRecord{Key: sc.key, Old: v})
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = updateState(e.statePath, func(st *hostState) error {
		rec := &exitRecord{NetNS: e.ns.inode, Table: ExitTable, Sysctls: current}
		if st.Exit != nil {
			if err := e.ns.checkRecorded("exit networking", st.Exit.NetNS); err != nil {
				return err
			}
			// Left by a crashed run: its values are the real originals.
			rec.Sysctls = st.Exit.Sysctls
		}
		e.sysctls = rec.Sysctls
		e.recorded = true
		st.Exit = rec
		return nil
	})
	if err != nil {
		return err
	}
	if err := e.install(cfg); err != nil {
		return err
	}
	return e.ns.run(func() error {
		for _, s := range e.sysctls {
			if err := writeSysctl(s.Key, exitSysctlValue(s.Key)); err != nil {
				return err
			}
		}
		return nil
	})
}

// install replaces the table in one transaction.
func (e *ExitNetworking) install(cfg ExitConfig) error {
	c, t := e.conn, e.table
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	policyAccept := nftables.ChainPolicyAccept
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio, Policy: &policyAccept})
	}
	regular := func(name string) *nftables.Chain { return c.AddChain(&nftables.Chain{Name: name, Table: t}) }

	post := base(exPostrouting, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	mangle := base(exMangle, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityMangle)
	forward := base(exForward, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	input := base(exInput, nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	refuse := regular(exRefuse)
	fromClients := regular(exFromClients)
	regular(exPolicy)

	// Masquerade: the internet sees the exit's address, and replies find
	// their way back through conntrack only.
	for _, p := range cfg.ClientPrefixes {
		c.AddRule(rule(t, post, oifname(cfg.Uplink), matchAddr(p, false), one(&expr.Masq{})))
	}

	// Clamp the MSS of SYNs both ways so no segment outgrows the tunnel
	// (the SYN-ACK from the internet learns the TUN's MTU).
	for _, tun := range cfg.tuns() {
		c.AddRule(rule(t, mangle, iifname(tun), setTCPMSSToRouteMTU()))
		c.AddRule(rule(t, mangle, oifname(tun), setTCPMSSToRouteMTU()))
	}

	c.AddRule(rule(t, refuse, matchL4proto(unix.IPPROTO_TCP), one(&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})))
	c.AddRule(rule(t, refuse, one(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED})))
	refuseCounted := func(reason string, parts ...[]expr.Any) *nftables.Rule {
		parts = append(parts, one(&expr.Counter{}, goTo(exRefuse)))
		return commented(rule(t, fromClients, parts...), reason)
	}

	// Clients' packets pass the rejections; what comes back from them
	// (the policy chain ends without a verdict) goes to the uplink.
	for _, tun := range cfg.tuns() {
		c.AddRule(rule(t, forward, iifname(tun), one(jump(exFromClients))))
		c.AddRule(rule(t, forward, iifname(tun), one(accept())))
	}
	// Only replies may go to clients: a neighbour on the uplink must not
	// reach them by routing to their addresses.
	for _, tun := range cfg.tuns() {
		c.AddRule(rule(t, forward, iifname(cfg.Uplink), oifname(tun), matchCtEstablished(), one(accept())))
		c.AddRule(commented(rule(t, forward, oifname(tun), one(&expr.Counter{}, drop())), DropUnsolicited))
	}
	// Nothing else is forwarded while the exit runs: forwarding is on
	// for the exit's sake only, and a neighbour must not route through it.
	c.AddRule(commented(rule(t, forward, one(&expr.Counter{}, drop())), DropNotExit))

	// Packets from clients to any address of the exit host are delivered
	// locally, so they meet the input hook, not forward.
	for _, tun := range cfg.tuns() {
		c.AddRule(commented(rule(t, input, iifname(tun), one(&expr.Counter{}, goTo(exRefuse))), RejectExitHost))
	}

	for _, tun := range cfg.tuns() {
		c.AddRule(refuseCounted(RejectClientToClient, oifname(tun)))
	}
	for _, p := range cfg.ClientPrefixes {
		c.AddRule(refuseCounted(RejectClientToClient, matchAddr(p, true)))
	}
	for _, port := range SMTPPorts {
		// Out of the uplink only: the host's other interfaces lead to its
		// own networks (the mixnet's LAN, management), not the internet.
		c.AddRule(refuseCounted(RejectNotUplink, matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, cfg.Uplink)))
		c.AddRule(refuseCounted(RejectSMTP, matchL4proto(unix.IPPROTO_TCP), matchPorts(port, port, true)))
	}
	for _, p := range cfg.AllowPrivate {
		c.AddRule(rule(t, fromClients, matchAddr(p, true), one(goTo(exPolicy))))
	}
	for _, p := range PrivateDestinations {
		c.AddRule(refuseCounted(RejectPrivate(p), matchAddr(p, true)))
	}
	c.AddRule(rule(t, fromClients, one(goTo(exPolicy))))

	e.addPolicyRules(cfg.Policy)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install table %s: %w", ExitTable, err)
	}
	return nil
}

// addPolicyRules queues the compiled exit policy: first match wins, as in
// ExitPolicy.Allows.
func (e *ExitNetworking) addPolicyRules(p *ExitPolicy) {
	if p == nil {
		return
	}
	for _, r := range compileExitPolicy(e.table, p) {
		e.conn.AddRule(r)
	}
}

// compileExitPolicy turns each policy rule into nftables rules in the policy
// chain; a rule with ports becomes one rule for TCP and one for UDP.
func compileExitPolicy(t *nftables.Table, p *ExitPolicy) []*nftables.Rule {
	chain := &nftables.Chain{Name: exPolicy, Table: t}
	var out []*nftables.Rule
	for _, r := range p.Rules {
		var match []expr.Any
		if r.Network.IsValid() {
			match = matchAddr(r.Network, true)
		}
		verdict := one(accept())
		if !r.Accept {
			verdict = one(&expr.Counter{}, goTo(exRefuse))
		}
		add := func(parts ...[]expr.Any) {
			nr := rule(t, chain, append(parts, verdict)...)
			if !r.Accept {
				commented(nr, RejectPolicy(r))
			}
			out = append(out, nr)
		}
		if r.AllPorts() {
			add(match)
			continue
		}
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			add(match, matchL4proto(proto), matchPorts(r.FirstPort, r.LastPort, true))
		}
	}
	return out
}

// SetPolicy replaces the exit policy in one transaction.
func (e *ExitNetworking) SetPolicy(p *ExitPolicy) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return errors.New("exit networking: stopped")
	}
	e.conn.FlushChain(&nftables.Chain{Name: exPolicy, Table: e.table})
	e.addPolicyRules(p)
	if err := e.conn.Flush(); err != nil {
		return fmt.Errorf("exit networking: set policy: %w", err)
	}
	return nil
}

// Rejected reports, per reason, how many packets from clients the exit has
// refused (see RejectClientToClient and the other reason keys).
func (e *ExitNetworking) Rejected() (map[string]Counter, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil, errors.New("exit networking: stopped")
	}
	all := make(map[string]Counter)
	for _, chain := range []string{exForward, exInput, exFromClients, exPolicy} {
		counters, err := countersByComment(e.conn, e.table, chain)
		if err != nil {
			return nil, fmt.Errorf("exit networking: %w", err)
		}
		maps.Copy(all, counters)
	}
	return all, nil
}

// Close removes the exit's table and puts the forwarding sysctls back. It is
// idempotent.
func (e *ExitNetworking) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil
	}
	if err := undoExit(e.ns, e.conn, e.sysctls); err != nil {
		return fmt.Errorf("exit networking: %w", err)
	}
	err := updateState(e.statePath, func(st *hostState) error {
		if st.Exit != nil && st.Exit.NetNS == e.nsInode {
			st.Exit = nil
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("exit networking: %w", err)
	}
	e.stopped = true
	e.release()
	return nil
}

func (e *ExitNetworking) release() {
	if e.conn != nil {
		e.conn.CloseLasting()
		e.conn = nil
	}
	e.ns.close()
	e.ns = nil
}

// undoExit switches forwarding back first, so nothing is forwarded without
// the policy while the table goes. The sysctls go back in the reverse order
// of their setting.
func undoExit(ns *boundNetNS, conn *nftables.Conn, sysctls []sysctlRecord) error {
	err := ns.run(func() error {
		var errs []error
		for _, s := range slices.Backward(sysctls) {
			if err := writeSysctl(s.Key, s.Old); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, err) // ENOENT: the interface is gone, and its setting with it
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return err
	}
	if err := deleteTable(conn, &nftables.Table{Name: ExitTable, Family: nftables.TableFamilyINet}); err != nil {
		return fmt.Errorf("remove table %s: %w", ExitTable, err)
	}
	return nil
}

// restoreExit undoes what a crashed exit left, in the calling thread's
// namespace.
func restoreExit(rec *exitRecord) error {
	ns, err := currentNetNS()
	if err != nil {
		return fmt.Errorf("exit networking: %w", err)
	}
	defer ns.close()
	if err := ns.checkRecorded("exit networking", rec.NetNS); err != nil {
		return err
	}
	conn, err := newNFTConn(ns)
	if err != nil {
		return fmt.Errorf("exit networking: %w", err)
	}
	defer conn.CloseLasting()
	if err := undoExit(ns, conn, rec.Sysctls); err != nil {
		return fmt.Errorf("exit networking: %w", err)
	}
	return nil
}

// FlushConntrack deletes the connection tracking entries of flows from or to
// the given client addresses, in the exit's namespace: a released address
// must not inherit its last session's NAT mappings (the internet host's
// replies would reach the next client). It returns how many it deleted.
func (e *ExitNetworking) FlushConntrack(addrs ...netip.Addr) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return 0, errors.New("exit networking: stopped")
	}
	h, err := netlink.NewHandleAt(e.ns.handle, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("exit networking: conntrack: %w", err)
	}
	defer h.Close()
	return flushConntrack(h, addrs)
}

// FlushConntrack deletes the conntrack entries of addrs in the calling
// namespace, as ExitNetworking.FlushConntrack does in its own: for another
// door of the exit (the WireGuard one) handing a client's address to the
// next client.
func FlushConntrack(addrs ...netip.Addr) (int, error) {
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("conntrack: %w", err)
	}
	defer h.Close()
	return flushConntrack(h, addrs)
}

func flushConntrack(h *netlink.Handle, addrs []netip.Addr) (int, error) {
	f := conntrackAddrs(make(map[netip.Addr]bool, len(addrs)))
	var v4, v6 bool
	for _, a := range addrs {
		f[a.Unmap()] = true
		v4, v6 = v4 || a.Unmap().Is4(), v6 || a.Is6() && !a.Is4In6()
	}
	var n uint
	var errs []error
	for _, fam := range []struct {
		on  bool
		fam netlink.InetFamily
	}{{v4, unix.AF_INET}, {v6, unix.AF_INET6}} {
		if !fam.on {
			continue
		}
		m, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam.fam, f)
		n += m
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return int(n), fmt.Errorf("exit networking: conntrack: %w", err)
	}
	return int(n), nil
}

type conntrackAddrs map[netip.Addr]bool

func (c conntrackAddrs) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	for _, ip := range []net.IP{flow.Forward.SrcIP, flow.Forward.DstIP} {
		if a, ok := netip.AddrFromSlice(ip); ok && c[a.Unmap()] {
			return true
		}
	}
	return false
}
