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
// queue, where CoDel ages them out.
func (t *Tunnel) readTUN(dev tun.Device) error {
	bufs, sizes := tun.NewBatch(dev)
	// The errors come from the exit's TUN address: to the user's stack
	// the tunnel is the next hop, and the exit the router behind it.
	tooBig := icmperr.NewResponder(ipr.RouterIPv4, ipr.RouterIPv6, icmperr.DefaultRate, icmperr.DefaultBurst)
	for {
		n, err := dev.Read(bufs, sizes)
		for i := range n {
			pkt := bufs[i][:sizes[i]]
			if len(pkt) > t.mtu {
				// The TUN's MTU keeps these out; a packet that
				// slips through (a device or stack set up with a
				// larger MTU) could never fit a bundle. Tell its
				// sender the MTU, so it shrinks its packets instead
				// of retransmitting into a black hole.
				t.tooBig.Add(1)
				t.answerTooBig(dev, tooBig, pkt)
				continue
			}
			t.queue.push(pkt, time.Now())
		}
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

// sendLoop sends one DataUp per free slot of the mixnet client: queued
// packets, with the spare room filled by SURBs while the exit needs them,
// or SURBs alone when there is nothing to send but the exit runs low.
//
// Every DataUp carries our sender tag, which names the session at the exit,
// but a full one carries no SURB: that is what lets a bundle hold an IP
// packet of the tunnel's MTU (maxUpPacket). While the exit needs SURBs,
// bundles are packed to leave room for at least one; when the head packet
// is too big for that, slots alternate between a SURB-only DataUp and a
// full bundle, so neither the SURB supply nor the upload stalls.
func (t *Tunnel) sendLoop(ctx context.Context) error {
	mix, router := t.mix, t.router
	encFull := ipr.NewBundleEncoder(mix.RepliablePacketCapacity(0) - ipr.DataUpOverhead)
	encSURB := ipr.NewBundleEncoder(mix.RepliablePacketCapacity(1) - ipr.DataUpOverhead)
	bigTurn := false // the last slot went to SURBs alone, past a big head packet
	var msg []byte
	recheck := time.NewTicker(100 * time.Millisecond) // for SURB stalls
	defer recheck.Stop()
	pace := max(t.cfg.Profile.Loopix.SendInterval/4, time.Millisecond)
	for {
		now := time.Now()
		queued, _ := t.queue.len()
		deficit := t.budget.deficit(now)
		if queued == 0 && deficit <= 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-t.queue.ready:
			case <-recheck.C:
			}
			continue
		}
		// Keep the mixnet client's own queue short: a packet waiting
		// there has a sojourn CoDel cannot see. Only packets waiting for
		// a slot count: the client's reliable messages (SURBs it grants
		// the exit) stay in flight until acknowledged, seconds at Nym's
		// delays, and must not hold up the tunnel meanwhile.
		if mix.Queued() >= t.cfg.MaxClientQueue {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pace):
			}
			continue
		}
		enc := encFull
		if deficit > 0 && !bigTurn {
			enc = encSURB
		}
		bigTurn = false
		enc.Reset(nil)
		for {
			pkt, ok := t.queue.popIf(now, enc.Fits)
			if !ok {
				break
			}
			if err := enc.Add(pkt); err != nil { // Fits said yes: cannot happen
				t.tooBig.Add(1)
			}
		}
		if enc == encSURB && enc.Packets() == 0 {
			// The head, if any, needs a bundle without SURBs: it
			// goes in the next slot, after these SURBs.
			queued, _ = t.queue.len()
			bigTurn = queued > 0
		}
		var err error
		msg, err = (&ipr.DataUp{Seq: t.upSeq, Bundle: enc.Bytes()}).AppendBinary(msg[:0])
		if err != nil {
			return fmt.Errorf("vpn: encoding data: %w", err)
		}
		nSURBs := maxSURBs(mix, len(msg), 0, deficit)
		if err := mix.SendRepliablePacket(ctx, router, msg, nSURBs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("vpn: sending data: %w", err)
		}
		t.upSeq++
		t.budget.gave(nSURBs)
		t.bundlesUp.Add(1)
		t.packetsUp.Add(uint64(enc.Packets()))
		t.bytesUp.Add(uint64(enc.Len() - 2*enc.Packets()))
		t.lastSent.Store(now.UnixNano())
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
// cut off from its gateway for GatewayTimeout.
func (t *Tunnel) watchdog(ctx context.Context) error {
	period := min(t.cfg.PingInterval/4, time.Second)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
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
