package netmon

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nlSource follows the kernel's link, address and route notifications
// (rtnetlink multicast groups) and reads the uplink from the main routing
// table: the tunnel's own default routes live in a table of their own (see
// platform.ApplyRoutes), so main says what the host's way out is.
type nlSource struct {
	cfg  Config
	nl   *netlink.Handle
	fire chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

// resubscribeAfter is the pause before a failed subscription (its socket
// overran, say) is made again; the uplink is read afresh then, so no
// change is missed for good.
const resubscribeAfter = time.Second

// rcvbuf is each subscription's socket buffer: a Wi-Fi switch that
// replaces many routes must not overrun it.
const rcvbuf = 1 << 20

func newSource(cfg Config) (source, error) {
	var nl *netlink.Handle
	var err error
	if cfg.Namespace != nil {
		nl, err = netlink.NewHandleAt(*cfg.Namespace)
	} else {
		nl, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("netmon: netlink: %w", err)
	}
	s := &nlSource{cfg: cfg, nl: nl, fire: make(chan struct{}, 1), done: make(chan struct{})}
	// Subscribe before returning, so that no change after New goes
	// unseen; later failures are retried by follow.
	ns := cfg.Namespace
	subs := []func() (func(), error){
		func() (func(), error) {
			return follow(s, "links", func(ch chan netlink.LinkUpdate, done chan struct{}, onErr func(error)) error {
				return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{Namespace: ns, ErrorCallback: onErr, ReceiveBufferSize: rcvbuf})
			})
		},
		func() (func(), error) {
			return follow(s, "addresses", func(ch chan netlink.AddrUpdate, done chan struct{}, onErr func(error)) error {
				return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{Namespace: ns, ErrorCallback: onErr, ReceiveBufferSize: rcvbuf})
			})
		},
		func() (func(), error) {
			return follow(s, "routes", func(ch chan netlink.RouteUpdate, done chan struct{}, onErr func(error)) error {
				return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{Namespace: ns, ErrorCallback: onErr, ReceiveBufferSize: rcvbuf})
			})
		},
	}
	for _, sub := range subs {
		run, err := sub()
		if err != nil {
			s.close()
			return nil, err
		}
		s.wg.Go(run)
	}
	return s, nil
}

// follow subscribes once (returning the error of that) and returns the
// loop that pokes s on every notification until s closes, subscribing
// again when the subscription fails.
func follow[T any](s *nlSource, what string, subscribe func(ch chan T, done chan struct{}, onErr func(error)) error) (func(), error) {
	start := func() (chan T, chan struct{}, error) {
		ch, done := make(chan T, 64), make(chan struct{})
		if err := subscribe(ch, done, func(err error) { s.cfg.Logger.Debug("netmon: netlink", "what", what, "err", err) }); err != nil {
			close(done)
			return nil, nil, fmt.Errorf("netmon: subscribing to %s: %w", what, err)
		}
		return ch, done, nil
	}
	ch, done, err := start()
	if err != nil {
		return nil, err
	}
	return func() {
		for {
			if ch != nil && !read(s, ch, done) {
				return
			}
			// The subscription failed: a change may have gone unseen.
			s.poke()
			select {
			case <-s.done:
				return
			case <-time.After(resubscribeAfter):
			}
			if ch, done, err = start(); err != nil {
				s.cfg.Logger.Warn("netmon: subscribing again", "err", err)
			} else {
				s.poke()
			}
		}
	}, nil
}

// read pokes s for each notification on ch until the subscription fails
// (then it releases its socket by closing done and returns true) or s
// closes (false). ch is read to its end either way: netlink's reader
// closes it once the socket is closed and must not block on it meanwhile.
func read[T any](s *nlSource, ch chan T, done chan struct{}) bool {
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				close(done)
				return true
			}
			s.poke()
		case <-s.done:
			close(done)
			for range ch {
			}
			return false
		}
	}
}

func (s *nlSource) poke() {
	select {
	case s.fire <- struct{}{}:
	default:
	}
}

func (s *nlSource) updates() <-chan struct{} { return s.fire }

func (s *nlSource) close() error {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.wg.Wait()
	s.nl.Close()
	return nil
}

// uplink reads the default routes of the main table, IPv4 and IPv6.
func (s *nlSource) uplink() (Uplink, error) {
	var u Uplink
	var err error
	if u.V4, err = s.route(netlink.FAMILY_V4); err != nil {
		return u, err
	}
	if u.V6, err = s.route(netlink.FAMILY_V6); err != nil {
		return u, err
	}
	return u, nil
}

// route is family's usable default route of the lowest metric: out of a
// link that is up, has its carrier (a cable pulled leaves the route but
// marks it linkdown) and is not ignored.
func (s *nlSource) route(family int) (Route, error) {
	routes, err := s.nl.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return Route{}, fmt.Errorf("netmon: listing routes: %w", err)
	}
	type cand struct {
		metric int
		r      Route
	}
	var best []cand
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.Type != unix.RTN_UNICAST {
			continue // unreachable, blackhole, prohibit
		}
		hops := []*netlink.NexthopInfo{{LinkIndex: r.LinkIndex, Gw: r.Gw, Flags: r.Flags}}
		if len(r.MultiPath) > 0 {
			hops = r.MultiPath
		}
		for _, h := range hops {
			if h.Flags&(unix.RTNH_F_LINKDOWN|unix.RTNH_F_DEAD) != 0 {
				continue
			}
			rt, ok, err := s.hop(family, h)
			if err != nil {
				return Route{}, err
			}
			if ok {
				best = append(best, cand{r.Priority, rt})
				break
			}
		}
	}
	if len(best) == 0 {
		return Route{}, nil
	}
	slices.SortStableFunc(best, func(a, b cand) int { return cmp.Compare(a.metric, b.metric) })
	return best[0].r, nil
}

// hop is the Route of one next hop, if its link is usable.
func (s *nlSource) hop(family int, h *netlink.NexthopInfo) (Route, bool, error) {
	link, err := s.nl.LinkByIndex(h.LinkIndex)
	if err != nil {
		return Route{}, false, nil // gone since the route was read: the next read sees it
	}
	a := link.Attrs()
	if a.Flags&net.FlagUp == 0 || slices.Contains(s.cfg.Ignore, a.Name) {
		return Route{}, false, nil
	}
	switch a.OperState {
	case netlink.OperDown, netlink.OperLowerLayerDown, netlink.OperNotPresent:
		return Route{}, false, nil
	}
	rt := Route{Link: a.Name, Index: a.Index}
	if gw, ok := netip.AddrFromSlice(h.Gw); ok {
		rt.Gateway = gw.Unmap()
	}
	addrs, err := s.nl.AddrList(link, family)
	if err != nil {
		return Route{}, false, fmt.Errorf("netmon: addresses of %s: %w", a.Name, err)
	}
	for _, ad := range addrs {
		// Tentative addresses count as the address they become, so
		// that the end of duplicate address detection is no change.
		if ad.Scope != unix.RT_SCOPE_UNIVERSE || ad.Flags&unix.IFA_F_DADFAILED != 0 {
			continue
		}
		if ip, ok := netip.AddrFromSlice(ad.IP); ok {
			rt.Addrs = append(rt.Addrs, ip.Unmap())
		}
	}
	slices.SortFunc(rt.Addrs, netip.Addr.Compare)
	return rt, true, nil
}
