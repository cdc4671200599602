package wgnest

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/nym-go/nym/wgreg"
)

// Hop names one of the nested tunnel's two WireGuard peers.
type Hop int

// The hops.
const (
	HopEntry Hop = iota // the outer tunnel's peer
	HopExit             // the inner tunnel's peer
)

func (h Hop) String() string {
	if h == HopEntry {
		return "entry"
	}
	return "exit"
}

// Grant is what a registration at a gateway gave: the bytes the peer may
// still move there (0: the gateway does not meter it) and the WireGuard
// pre-shared key it agreed.
type Grant struct {
	Allowance uint64
	PSK       [32]byte
}

// TopUpFunc registers a hop's key again with a new ticket and returns the
// new grant: what is left with the new ticket's bytes, and the new PSK.
type TopUpFunc func(ctx context.Context, hop Hop) (Grant, error)

// AllowanceStatus is where a hop's allowance stands, as the client counts
// it.
type AllowanceStatus struct {
	// Metered: the gateway meters this peer (the last grant was not 0).
	Metered bool
	// Left is the last grant less what the peer moved since, by the
	// client's own counters.
	Left uint64
	// TopUps counts the successful top-ups.
	TopUps uint64
	// Err is the last top-up's failure; nil once one succeeds.
	Err error
}

// Timing of KeepAllowance.
const (
	// allowanceCheck is how often the peer's counters are read.
	allowanceCheck = 500 * time.Millisecond
	// topUpLead is how much traffic at the current rate a top-up must be
	// started ahead of: a registration takes a link handshake and, for
	// the exit, a relay (a second or so on a loaded host).
	topUpLead = 5 * time.Second
	// topUpRetry is the first wait after a failed top-up; it doubles up
	// to topUpRetryMax.
	topUpRetry    = 2 * time.Second
	topUpRetryMax = 30 * time.Second
)

// SetPSK sets hop's pre-shared key, as a renewal at its gateway agreed.
// The running session keeps its keys; the next handshake uses the new PSK,
// as the gateway does from its answer on.
func (t *Tunnel) SetPSK(hop Hop, psk [32]byte) error {
	d, p := t.device(hop)
	cfg := fmt.Sprintf("public_key=%s\nupdate_only=true\npreshared_key=%s\n", hex.EncodeToString(p.PublicKey[:]), hex.EncodeToString(psk[:]))
	if err := d.IpcSet(cfg); err != nil {
		return fmt.Errorf("wgnest: setting the %s's PSK: %w", hop, err)
	}
	return nil
}

func (t *Tunnel) device(hop Hop) (*device.Device, Peer) {
	if hop == HopEntry {
		return t.outer, t.cfg.Entry
	}
	return t.inner, t.cfg.Exit
}

// used is the bytes hop's peer moved, both directions, as the gateway's
// meter counts them (each side counts the same WireGuard datagrams).
func (t *Tunnel) used(hop Hop) uint64 {
	d, _ := t.device(hop)
	s := peerStats(d)
	return s.RxBytes + s.TxBytes
}

// Allowance reports where hop's allowance stands (zero before
// KeepAllowance runs).
func (t *Tunnel) Allowance(hop Hop) AllowanceStatus {
	t.allowMu.Lock()
	defer t.allowMu.Unlock()
	return t.allow[hop]
}

func (t *Tunnel) setAllowance(hop Hop, f func(*AllowanceStatus)) {
	t.allowMu.Lock()
	f(&t.allow[hop])
	t.allowMu.Unlock()
}

// KeepAllowance tops up hop's allowance at its gateway before it runs out,
// until ctx ends: g is the registration's grant (a grant of 0 is
// unmetered: it only records that). On its own clock it counts the peer's
// bytes against the grant, and once what is left falls below a quarter of
// the last grant or below topUpLead of traffic at the current rate it
// calls topUp, sets the PSK the top-up agreed and counts from the new
// grant. A failed top-up is logged, kept in Allowance's Err and tried
// again with a backoff; if none succeeds the gateway removes the peer and
// the tunnel goes stale (Watch).
func (t *Tunnel) KeepAllowance(ctx context.Context, hop Hop, g Grant, topUp TopUpFunc) {
	log := t.cfg.Logger.With("hop", hop.String())
	t.setAllowance(hop, func(s *AllowanceStatus) { s.Metered, s.Left = g.Allowance != 0, g.Allowance })
	if g.Allowance == 0 {
		return
	}
	grant, base := g.Allowance, t.used(hop)
	last, lastAt := base, time.Now()
	var rate float64 // bytes per second, smoothed
	var retryAt time.Time
	retry := topUpRetry
	tick := time.NewTicker(allowanceCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now, used := time.Now(), t.used(hop)
		if dt := now.Sub(lastAt).Seconds(); dt > 0 {
			rate = 0.5*rate + 0.5*float64(used-last)/dt
		}
		last, lastAt = used, now
		spent := used - base
		left := uint64(0)
		if spent < grant {
			left = grant - spent
		}
		t.setAllowance(hop, func(s *AllowanceStatus) { s.Left = left })
		low := max(grant/4, uint64(rate*topUpLead.Seconds()))
		if left >= low || now.Before(retryAt) {
			continue
		}
		before := used
		ng, err := topUp(ctx, hop)
		if err == nil {
			err = t.SetPSK(hop, ng.PSK)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			retryAt = time.Now().Add(retry)
			log.Warn("topping up the allowance failed; the gateway removes the peer once it is used up",
				"left_bytes", left, "retry_in", retry, "err", err)
			t.setAllowance(hop, func(s *AllowanceStatus) { s.Err = err })
			retry = min(2*retry, topUpRetryMax)
			continue
		}
		retry, retryAt = topUpRetry, time.Time{}
		// The grant counts from the gateway's counters as it answered;
		// counting from ours as the top-up began errs low, by what moved
		// during the registration, never high.
		grant, base = ng.Allowance, before
		log.Debug("allowance topped up", "left_bytes", grant)
		t.setAllowance(hop, func(s *AllowanceStatus) {
			s.Left, s.Err = grant, nil
			s.TopUps++
			s.Metered = grant != 0
		})
		if grant == 0 {
			return // the gateway stopped metering
		}
	}
}

// GrantOf is the grant a registration at a gateway gave.
func GrantOf(reg wgreg.Registration) Grant {
	return Grant{Allowance: reg.Allowance, PSK: reg.PSK}
}
