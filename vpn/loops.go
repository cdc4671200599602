package vpn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/tun"
	"github.com/nym-go/nym/tun/icmperr"
)

// readTUN moves packets from dev into the upstream queue until dev closes.
// It outlives reconnects: packets read while the path is down wait in the
// queue, where CoDel ages them out. The packets stay in the buffers they
// were read into (see upstream).
func (t *Tunnel) readTUN(dev tun.Device) error {
	bufs, sizes := make([][]byte, dev.BatchSize()), make([]int, dev.BatchSize())
	t.up.getBufs(bufs)
	// The errors come from the exit's TUN address: to the user's stack
	// the tunnel is the next hop, and the exit the router behind it.
	tooBig := icmperr.NewResponder(ipr.RouterIPv4, ipr.RouterIPv6, icmperr.DefaultRate, icmperr.DefaultBurst)
	for {
		n, err := dev.Read(bufs, sizes)
		for i := range n {
			if sizes[i] > t.mtu {
				// The TUN's MTU keeps these out; a packet that
				// slips through (a device or stack set up with a
				// larger MTU) could never fit a bundle. Tell its
				// sender the MTU, so it shrinks its packets instead
				// of retransmitting into a black hole.
				t.tooBig.Add(1)
				t.answerTooBig(dev, tooBig, bufs[i][:sizes[i]])
				sizes[i] = -1 // not queued: the buffer stays in its slot
			}
		}
		t.up.push(bufs[:n], sizes[:n], t.up.now())
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, tun.ErrShortBuffer) {
				return err
			}
			t.log.Debug("vpn TUN read", "err", err)
		}
	}
}

// answerTooBig writes to dev the ICMP error for pkt, when the RFCs and the
// rate limit allow one.
func (t *Tunnel) answerTooBig(dev tun.Device, r *icmperr.Responder, pkt []byte) {
	msg, err := r.TooBig(pkt, t.mtu, time.Now())
	if err != nil {
		return // not allowed or rate limited; the drop is counted
	}
	if err := dev.Write([][]byte{msg}); err != nil {
		t.tunWriteErrs.Add(1)
		t.log.Debug("vpn TUN write of ICMP too big", "err", err)
	}
}

// recvLoop takes the router's replies: data goes through the resequencer to
// dev, the rest updates the tunnel's view of the exit.
func (t *Tunnel) recvLoop(ctx context.Context, dev tun.Device) error {
	mix, router := t.mix, t.router
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var out [][]byte
	release := func(bundle []byte) {
		pkts, bad := ipr.SplitBundle(bundle, out)
		out = pkts
		t.malformedDown.Add(uint64(bad))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-mix.Receive():
			if !ok {
				return errMixClosed
			}
			if !m.IsReply || m.From != router {
				continue
			}
			if err := t.handleReply(m.Data, release); err != nil {
				return err
			}
		case now := <-timer.C:
			t.reseq.Expire(now, release)
		}
		if len(out) > 0 {
			t.writeTUN(dev, out)
			clear(out)
			out = out[:0]
		}
		t.mu.Lock()
		t.reorder = t.reseq.Stats()
		t.mu.Unlock()
		timer.Stop()
		if d, ok := t.reseq.Deadline(); ok {
			timer.Reset(time.Until(d))
		}
	}
}

func (t *Tunnel) handleReply(data []byte, release func([]byte)) error {
	now := time.Now()
	t.lastReply.Store(now.UnixNano())
	// The reply spent a SURB, or said the exit runs low: the exit may
	// need SURBs now, which only the upstream stream sends.
	defer t.up.wakeIfShort(now)
	resp, err := ipr.ParseResponse(data)
	if err != nil {
		t.budget.replied(-1, now)
		t.malformedDown.Add(1)
		return nil
	}
	switch r := resp.(type) {
	case *ipr.DataDown:
		t.budget.replied(int(r.Backlog), now)
		t.bundlesDown.Add(1)
		t.reseq.Push(r.Seq, r.Bundle, now, release)
	case *ipr.Pong:
		t.budget.replied(-1, now)
		t.pongs.Add(1)
		if r.ID == t.pingID.Load() {
			t.lastRTT.Store(now.UnixNano() - t.lastPing.Load())
		}
	case *ipr.Info:
		t.budget.replied(-1, now)
		switch r.Code {
		case ipr.InfoLowSURBs:
			t.budget.low()
		case ipr.InfoPolicyRefused:
			t.log.Info("the exit policy refused traffic", "dest", r.Dest, "proto", r.Proto, "reason", r.Text)
			if t.cfg.OnRefused != nil {
				t.cfg.OnRefused(r.Dest, r.Proto, r.Text)
			}
		default:
			t.log.Info("exit info", "code", r.Code, "text", r.Text)
		}
	case *ipr.UnrequestedDisconnect:
		t.budget.replied(-1, now)
		return fmt.Errorf("%w: %s", errSessionEnded, r.Reason)
	default: // late answers to a retried Connect
		t.budget.replied(-1, now)
	}
	return nil
}

func (t *Tunnel) writeTUN(dev tun.Device, pkts [][]byte) {
	var n uint64
	for _, p := range pkts {
		n += uint64(len(p))
	}
	if err := dev.Write(pkts); err != nil {
		t.tunWriteErrs.Add(1)
		t.log.Debug("vpn TUN write", "err", err)
	}
	t.packetsDown.Add(uint64(len(pkts)))
	t.bytesDown.Add(n)
}

// watchdog pings when the session is quiet, so the exit does not expire it
// and we learn whether the path still works, and declares the path dead
// when nothing came back for DeadAfter, or when the mixnet client has been
// cut off from its gateway for GatewayTimeout. Its ticker is a liveness
// check, not the send path's pace: data and SURBs leave when the client
// pulls them. It also wakes the upstream when the SURB budget, which
// gives SURBs up as lost after a stall with no reply (no event marks
// that), finds the exit short.
func (t *Tunnel) watchdog(ctx context.Context) error {
	period := min(t.cfg.PingInterval/4, time.Second)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			t.up.wakeIfShort(now)
			sinceReply := now.Sub(time.Unix(0, t.lastReply.Load()))
			if sinceReply > t.cfg.DeadAfter {
				return fmt.Errorf("%w for %v", errPathDead, sinceReply.Round(time.Second))
			}
			if off := t.mix.Offline(); off > t.cfg.GatewayTimeout {
				return fmt.Errorf("%w for %v", errGatewayLost, off.Round(time.Second))
			}
			quiet := sinceReply >= t.cfg.PingInterval || now.Sub(time.Unix(0, t.lastSent.Load())) >= t.cfg.PingInterval
			if quiet && now.Sub(time.Unix(0, t.lastPing.Load())) >= t.cfg.PingInterval {
				if err := t.ping(ctx, now); err != nil {
					return err
				}
			}
		}
	}
}

func (t *Tunnel) ping(ctx context.Context, now time.Time) error {
	id := t.pingID.Add(1)
	msg, err := ipr.MarshalRequest(&ipr.Ping{ID: id})
	if err != nil {
		return fmt.Errorf("vpn: encoding ping: %w", err)
	}
	n := maxSURBs(t.mix, len(msg), 1, t.cfg.ConnectSURBs)
	t.lastPing.Store(now.UnixNano())
	if err := t.mix.SendRepliablePacket(ctx, t.router, msg, n); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("vpn: sending ping: %w", err)
	}
	t.budget.gave(n)
	t.pings.Add(1)
	t.lastSent.Store(now.UnixNano())
	return nil
}
