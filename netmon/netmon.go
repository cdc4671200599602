// Package netmon watches the host's uplink: the default routes of the main
// routing table, the links they go out of and those links' addresses. It
// tells its owner when the uplink goes away (cable out, Wi-Fi lost,
// suspend), comes back, or changes (a new address or gateway, as a switch
// to another Wi-Fi network does), so that a tunnel reconnects at once
// instead of waiting out a backoff or a stale timer.
//
// Each OS has its own source of events (netmon_linux.go: netlink); the
// rest of the package decides what counts as a change.
package netmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// Route is the uplink of one address family: the default route the kernel
// would use, the link it goes out of and that link's global addresses.
// The zero Route means no usable default route.
type Route struct {
	Link    string       // the link's name
	Index   int          // the link's index
	Gateway netip.Addr   // invalid for a route without gateway (a point-to-point link)
	Addrs   []netip.Addr // the link's global addresses of the family, sorted
}

// Usable tells whether r is a default route out of a link that is up.
func (r Route) Usable() bool { return r.Index != 0 }

// Equal tells whether r and o are the same uplink.
func (r Route) Equal(o Route) bool {
	return r.Link == o.Link && r.Index == o.Index && r.Gateway == o.Gateway && slices.Equal(r.Addrs, o.Addrs)
}

func (r Route) String() string {
	if !r.Usable() {
		return "none"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "dev %s", r.Link)
	if r.Gateway.IsValid() {
		fmt.Fprintf(&b, " via %s", r.Gateway)
	}
	for _, a := range r.Addrs {
		fmt.Fprintf(&b, " src %s", a)
	}
	return b.String()
}

// Uplink is the host's way out, IPv4 and IPv6.
type Uplink struct{ V4, V6 Route }

// Usable tells whether either family has a usable default route.
func (u Uplink) Usable() bool { return u.V4.Usable() || u.V6.Usable() }

// Equal tells whether u and o are the same uplink.
func (u Uplink) Equal(o Uplink) bool { return u.V4.Equal(o.V4) && u.V6.Equal(o.V6) }

func (u Uplink) String() string { return "v4 " + u.V4.String() + "; v6 " + u.V6.String() }

// Event is a change of the uplink. Several changes in a quick row (an
// address goes, another comes, the gateway is replaced) make one Event,
// from the uplink before the first to the one after the last.
type Event struct{ Old, New Uplink }

// Up tells whether the event is one a tunnel reconnects on: a usable uplink
// came back or changed. When New is not usable the uplink went away and
// there is nothing to reconnect through.
func (e Event) Up() bool { return e.New.Usable() && !e.New.Equal(e.Old) }

// Config configures a Monitor.
type Config struct {
	// Ignore names links that are never the uplink: the tunnel's own
	// TUN, whose routes live in a table of their own anyway.
	Ignore []string
	// Settle is how long the routing must stay quiet before a change is
	// reported, so that the steps of one change (address, route,
	// gateway) make one Event. Zero means 300 ms.
	Settle time.Duration
	// Logger gets a line per change; nil means slog.Default().
	Logger *slog.Logger
	// Namespace, when set, is the network namespace to watch (Linux);
	// nil means the caller's.
	Namespace *netns.NsHandle
}

func (c Config) withDefaults() (Config, error) {
	if c.Settle < 0 {
		return c, fmt.Errorf("netmon: negative settle time %v", c.Settle)
	}
	if c.Settle == 0 {
		c.Settle = 300 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// ErrUnsupported: this OS has no uplink monitor yet.
var ErrUnsupported = errors.New("netmon: not supported on this OS")

// source is what each OS provides: a channel that gets a value whenever
// something the uplink depends on may have changed, and a way to read the
// uplink now.
type source interface {
	// updates fires (coalesced) on any link, address or route change.
	updates() <-chan struct{}
	uplink() (Uplink, error)
	close() error
}

// Monitor reports changes of the uplink on Changes until Close.
type Monitor struct {
	cfg     Config
	src     source
	changes chan Event
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu  sync.Mutex
	cur Uplink
}

// New starts watching the uplink. Changes gets the first Event when the
// uplink first differs from the one at New.
func New(cfg Config) (*Monitor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	src, err := newSource(cfg)
	if err != nil {
		return nil, err
	}
	cur, err := src.uplink()
	if err != nil {
		src.close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{cfg: cfg, src: src, changes: make(chan Event), cancel: cancel, cur: cur}
	m.wg.Go(func() { m.run(ctx) })
	return m, nil
}

// Current is the uplink as last read.
func (m *Monitor) Current() Uplink {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// Changes delivers the uplink's changes, coalesced while the reader is
// busy: a slow reader gets one Event from the uplink it last saw to the
// newest. It is closed by Close.
func (m *Monitor) Changes() <-chan Event { return m.changes }

// Close stops the monitor.
func (m *Monitor) Close() error {
	m.cancel()
	m.wg.Wait()
	return m.src.close()
}

func (m *Monitor) run(ctx context.Context) {
	defer close(m.changes)
	var (
		pending *Event // not yet delivered
		settle  = time.NewTimer(0)
		armed   = false
	)
	<-settle.C
	defer settle.Stop()
	for {
		var out chan<- Event
		var ev Event
		if pending != nil {
			out, ev = m.changes, *pending
		}
		select {
		case <-ctx.Done():
			return
		case <-m.src.updates():
			// Wait for the routing to go quiet: the steps of one
			// change come as several messages.
			settle.Reset(m.cfg.Settle)
			armed = true
		case <-settle.C:
			if !armed {
				continue
			}
			armed = false
			now, err := m.src.uplink()
			if err != nil {
				m.cfg.Logger.Warn("netmon: reading the uplink", "err", err)
				continue
			}
			m.mu.Lock()
			old := m.cur
			m.cur = now
			m.mu.Unlock()
			if now.Equal(old) {
				continue
			}
			m.cfg.Logger.Info("netmon: uplink changed", "from", old.String(), "to", now.String())
			if pending == nil {
				pending = &Event{Old: old}
			}
			pending.New = now
			if pending.New.Equal(pending.Old) {
				pending = nil // back where the reader last saw it
			}
		case out <- ev:
			pending = nil
		}
	}
}
