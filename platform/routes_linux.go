package platform

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeProtocol tags the routes we add (`ip route` shows "proto 110"), so
// undoing deletes only our routes even if someone added one with the same
// destination in the meantime.
const routeProtocol netlink.RouteProtocol = 110

// Routes is the host's routing set up to send everything through the TUN.
// Remove undoes it.
type Routes struct {
	statePath string
	ns        *boundNetNS
	nl        *netlink.Handle

	mu       sync.Mutex
	rec      routeRecord // what to undo: ours plus leftovers of a crashed run
	recorded bool        // rec is in the state file
	done     bool
}

// ApplyRoutes puts the addresses on the TUN, brings it up, and sends every
// IPv4 and IPv6 packet without cfg.Mark into the TUN by policy routing (see
// RouteConfig). It works in the calling thread's network namespace. On error
// it undoes what it did.
func ApplyRoutes(cfg RouteConfig) (*Routes, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	ns, err := currentNetNS()
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	nl, err := netlink.NewHandleAt(ns.handle)
	if err != nil {
		ns.close()
		return nil, fmt.Errorf("routes: netlink: %w", err)
	}
	r := &Routes{statePath: cfg.StatePath, ns: ns, nl: nl, rec: routeRecord{NetNS: ns.inode}}
	if err := r.apply(cfg); err != nil {
		var undoErr error
		if r.recorded {
			undoErr = r.Remove()
		}
		r.release()
		return nil, fmt.Errorf("routes: %w", errors.Join(err, undoErr))
	}
	return r, nil
}

func (r *Routes) apply(cfg RouteConfig) error {
	tun, err := r.nl.LinkByName(cfg.TUN)
	if err != nil {
		return fmt.Errorf("TUN %s: %w", cfg.TUN, err)
	}
	// Plan everything before changing anything: the exceptions must be
	// looked up while the original routes still decide.
	var plan routeRecord
	if tun.Attrs().Flags&net.FlagUp == 0 {
		plan.LinksUp = append(plan.LinksUp, cfg.TUN)
	}
	present, err := r.nl.AddrList(tun, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", cfg.TUN, err)
	}
	v6, err := r.tunIPv6(cfg.TUN)
	if err != nil {
		return err
	}
	for _, p := range cfg.Addresses {
		if p.Addr().Is6() && v6 != ipv6Enabled {
			// The kernel turns IPv6 off on a link whose MTU is below 1280
			// and refuses IPv6 addresses there; the IPv6 routes below then
			// become unreachable ones, so nothing leaks around the TUN.
			continue
		}
		if !slices.ContainsFunc(present, func(a netlink.Addr) bool { return prefixOf(a.IPNet) == p }) {
			plan.Addrs = append(plan.Addrs, addrEntry{Prefix: p, Dev: cfg.TUN})
		}
	}
	table := cfg.table()
	for _, p := range tunnelDefaults {
		switch {
		case p.Addr().Is4():
			plan.Routes = append(plan.Routes, routeEntry{Table: table, Dst: p, Dev: cfg.TUN})
		case v6 == ipv6Enabled:
			plan.Routes = append(plan.Routes, routeEntry{Table: table, Dst: p, Dev: cfg.TUN})
		case v6 == ipv6DisabledOnTUN:
			plan.Routes = append(plan.Routes, routeEntry{Table: table, Dst: p, Unreachable: true})
		default:
			continue // no IPv6 here at all: no rules for it either
		}
		v6 := p.Addr().Is6()
		plan.Rules = append(plan.Rules,
			ruleEntry{IPv6: v6, Priority: minRulePriority, Table: mainTable, SuppressDefault: true},
			ruleEntry{IPv6: v6, Priority: maxRulePriority, Table: table, NotMark: cfg.Mark})
	}

	if plan.Sysctls, err = planMarkRestore(r.ns); err != nil {
		return err
	}
	plan.MarkTable = MarkTable

	// Record, then change.
	err = updateState(r.statePath, func(st *hostState) error {
		if st.Routes != nil {
			if err := r.ns.checkRecorded("routes", st.Routes.NetNS); err != nil {
				return err
			}
		}
		r.mu.Lock()
		r.rec.merge(st.Routes)
		r.rec.merge(&plan)
		rec := r.rec
		r.recorded = true
		r.mu.Unlock()
		st.Routes = &rec
		return nil
	})
	if err != nil {
		return err
	}

	if len(plan.LinksUp) > 0 {
		if err := r.nl.LinkSetUp(tun); err != nil {
			return fmt.Errorf("set %s up: %w", cfg.TUN, err)
		}
	}
	for _, a := range plan.Addrs {
		err := r.nl.AddrAdd(tun, &netlink.Addr{IPNet: ipNetOf(a.Prefix)})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to %s: %w", a.Prefix, cfg.TUN, err)
		}
	}
	// The routes first: the rules then find the tunnel's table complete.
	for _, e := range plan.Routes {
		if err := r.addRoute(e); err != nil {
			return err
		}
	}
	if err := applyMarkRestore(r.ns, cfg.Mark, plan.Sysctls); err != nil {
		return err
	}
	for _, e := range plan.Rules {
		err := r.nl.RuleAdd(netlinkRule(e))
		if err != nil && !errors.Is(err, unix.EEXIST) { // EEXIST: ours, from a crashed run
			return fmt.Errorf("rule %+v: %w", e, err)
		}
	}
	return nil
}

// netlinkRule builds the rule of e.
func netlinkRule(e ruleEntry) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = netlink.FAMILY_V4
	if e.IPv6 {
		r.Family = netlink.FAMILY_V6
	}
	r.Priority = e.Priority
	r.Table = int(e.Table)
	r.Protocol = uint8(routeProtocol)
	if e.NotMark != 0 {
		r.Mark = e.NotMark
		r.Invert = true
	}
	if e.SuppressDefault {
		r.SuppressPrefixlen = 0
	}
	return r
}

type ipv6State int

const (
	ipv6Enabled       ipv6State = iota
	ipv6DisabledOnTUN           // the host has IPv6, the TUN cannot carry it
	ipv6Absent                  // no IPv6 in this kernel or namespace: nothing can leak
)

// tunIPv6 tells whether IPv6 can go through the TUN.
func (r *Routes) tunIPv6(tun string) (ipv6State, error) {
	state := ipv6Enabled
	err := r.ns.run(func() error {
		if _, err := readSysctl("net/ipv6/conf/all/disable_ipv6"); errors.Is(err, unix.ENOENT) {
			state = ipv6Absent
			return nil
		}
		v, err := readSysctl("net/ipv6/conf/" + tun + "/disable_ipv6")
		if errors.Is(err, unix.ENOENT) || v == "1" {
			state = ipv6DisabledOnTUN
			return nil
		}
		return err
	})
	return state, err
}

func (r *Routes) addRoute(e routeEntry) error {
	var link netlink.Link
	if !e.Unreachable {
		var err error
		if link, err = r.nl.LinkByName(e.Dev); err != nil {
			return fmt.Errorf("route %s: device %s: %w", e.Dst, e.Dev, err)
		}
	}
	err := r.nl.RouteAdd(netlinkRoute(e, link))
	if errors.Is(err, unix.EEXIST) {
		// Ours from a crashed run is fine; anyone else's (another VPN) is
		// a conflict we must not paper over.
		ours, lerr := r.nl.RouteListFiltered(familyOf(e.Dst.Addr()),
			&netlink.Route{Dst: ipNetOf(e.Dst), Protocol: routeProtocol, Table: routeTable(e)},
			netlink.RT_FILTER_DST|netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if lerr == nil && len(ours) > 0 {
			return nil
		}
		return fmt.Errorf("route %s: another route with this destination is present", e.Dst)
	}
	if err != nil {
		return fmt.Errorf("route %s dev %s: %w", e.Dst, e.Dev, err)
	}
	return nil
}

// Remove deletes what ApplyRoutes added (and the leftovers it took over) and
// clears the record. It is idempotent.
func (r *Routes) Remove() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil
	}
	if err := undoRoutes(r.ns, r.nl, &r.rec); err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	err := updateState(r.statePath, func(st *hostState) error {
		if st.Routes != nil && st.Routes.NetNS == r.rec.NetNS {
			st.Routes = nil
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	r.done = true
	r.release()
	return nil
}

// release closes the netlink handle and the namespace; safe to call twice.
func (r *Routes) release() {
	if r.nl != nil {
		r.nl.Close()
		r.nl = nil
	}
	r.ns.close()
	r.ns = nil
}

// restoreRoutes undoes a record left by a crashed run, in the calling
// thread's namespace.
func restoreRoutes(rec *routeRecord) error {
	ns, err := currentNetNS()
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	defer ns.close()
	if err := ns.checkRecorded("routes", rec.NetNS); err != nil {
		return err
	}
	nl, err := netlink.NewHandleAt(ns.handle)
	if err != nil {
		return fmt.Errorf("routes: netlink: %w", err)
	}
	defer nl.Close()
	if err := undoRoutes(ns, nl, rec); err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	return nil
}

// undoRoutes deletes in the reverse order of adding. What is already gone
// (a TUN that died with its process takes its routes and addresses along) is
// not an error.
func undoRoutes(ns *boundNetNS, nl *netlink.Handle, rec *routeRecord) error {
	var errs []error
	// Rules first: without them nothing uses the tunnel's table.
	for i := len(rec.Rules) - 1; i >= 0; i-- {
		err := nl.RuleDel(netlinkRule(rec.Rules[i]))
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete rule %+v: %w", rec.Rules[i], err))
		}
	}
	if err := undoMarkRestore(ns, rec); err != nil {
		errs = append(errs, err)
	}
	for i := len(rec.Routes) - 1; i >= 0; i-- {
		e := rec.Routes[i]
		var link netlink.Link
		if !e.Unreachable {
			var err error
			link, err = nl.LinkByName(e.Dev)
			if isLinkGone(err) {
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("route %s: device %s: %w", e.Dst, e.Dev, err))
				continue
			}
		}
		err := nl.RouteDel(netlinkRoute(e, link))
		if err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s dev %s: %w", e.Dst, e.Dev, err))
		}
	}
	for _, a := range rec.Addrs {
		link, err := nl.LinkByName(a.Dev)
		if isLinkGone(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("address %s: device %s: %w", a.Prefix, a.Dev, err))
			continue
		}
		err = nl.AddrDel(link, &netlink.Addr{IPNet: ipNetOf(a.Prefix)})
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("delete address %s from %s: %w", a.Prefix, a.Dev, err))
		}
	}
	for _, name := range rec.LinksUp {
		link, err := nl.LinkByName(name)
		if isLinkGone(err) {
			continue
		}
		if err == nil {
			err = nl.LinkSetDown(link)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("set %s down: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// netlinkRoute builds the route of e; link is nil for unreachable routes.
func netlinkRoute(e routeEntry, link netlink.Link) *netlink.Route {
	rt := &netlink.Route{
		Dst:      ipNetOf(e.Dst),
		Protocol: routeProtocol,
		Table:    routeTable(e),
		Scope:    netlink.SCOPE_LINK,
	}
	if e.Unreachable {
		rt.Type = unix.RTN_UNREACHABLE
		rt.Scope = netlink.SCOPE_UNIVERSE
		return rt
	}
	rt.LinkIndex = link.Attrs().Index
	if e.Gateway.IsValid() {
		rt.Gw = e.Gateway.AsSlice()
		rt.Scope = netlink.SCOPE_UNIVERSE
	}
	if e.Dst.Addr().Is6() {
		rt.Scope = netlink.SCOPE_UNIVERSE // IPv6 routes have no scope
	}
	return rt
}

func routeTable(e routeEntry) int {
	if e.Table == 0 {
		return unix.RT_TABLE_MAIN
	}
	return int(e.Table)
}

func isLinkGone(err error) bool {
	var notFound netlink.LinkNotFoundError
	return errors.As(err, &notFound) || errors.Is(err, unix.ENODEV)
}

func ipNetOf(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
