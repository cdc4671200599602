package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/mixnode"
)

// epochLoop keeps the node registered and its topology, keys and role
// current. It wakes at every refresh period and just after each epoch
// boundary, so a new role or key takes effect within moments of the
// boundary, with no restart.
func (n *Node) epochLoop(ctx context.Context) error {
	rotation := uint64(0) // a first guess; the directory's answer corrects it
	retry := backoff{min: minRetryWait, max: maxRetryWait}
	for {
		var wait time.Duration
		if r, err := n.refresh(ctx, rotation); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait = retry.next()
			n.log.Warn("directory refresh", "err", err, "retry_in", wait.Round(time.Millisecond))
		} else {
			rotation = r
			wait = n.cfg.RefreshPeriod.Duration
			if t := n.topo.Load(); t == nil || t.Routable() != nil {
				// A network still forming: the directory reissues the topology
				// as nodes pass their probes, so ask again soon.
				wait = min(wait, time.Second)
				retry.reset()
			} else if untilEnd := t.EpochEnd.Sub(n.opts.Now()) + 20*time.Millisecond; untilEnd > 0 {
				// Just past the boundary, so the directory has the new epoch.
				wait = min(wait, untilEnd)
				retry.reset()
			} else {
				// The directory is late with the new epoch (or down, and
				// this is the last topology): ask again, backing off.
				wait = min(wait, retry.next())
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Retry waits of the epoch loop after a failed refresh or a late topology:
// they double from minRetryWait to maxRetryWait, with jitter (backoff).
const (
	minRetryWait = 100 * time.Millisecond
	maxRetryWait = time.Minute
)

// refresh registers the node's descriptor (announcing the Sphinx keys of the
// current and the next rotation), then fetches the topology and applies it.
// It returns the rotation in force.
func (n *Node) refresh(ctx context.Context, rotation uint64) (uint64, error) {
	reg, err := n.register(ctx, rotation)
	if err != nil {
		return rotation, err
	}
	if reg.Rotation != rotation {
		// Our guess was wrong (first start, or a rotation passed): announce
		// the keys the directory needs now.
		rotation = reg.Rotation
		if reg, err = n.register(ctx, rotation); err != nil {
			return rotation, err
		}
	}
	for _, w := range reg.Warnings {
		n.log.Warn("directory says", "warning", w)
	}
	t, err := n.dir.Topology(ctx)
	if err != nil {
		var se *directory.StatusError
		if errors.As(err, &se) {
			// No topology yet: a network still forming. Not an error of ours.
			n.log.Debug("no topology yet", "err", err)
			return rotation, nil
		}
		return rotation, fmt.Errorf("fetch topology: %w", err)
	}
	if err := n.apply(t); err != nil {
		return rotation, err
	}
	return t.Rotation, nil
}

func (n *Node) register(ctx context.Context, rotation uint64) (*directory.Registration, error) {
	d, err := n.describe(rotation)
	if err != nil {
		return nil, err
	}
	sd, err := directory.SignDescriptor(n.keys.Identity, d)
	if err != nil {
		return nil, fmt.Errorf("sign descriptor: %w", err)
	}
	reg, err := n.registerAll(ctx, sd)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	n.mu.Lock()
	n.descriptor = d
	n.mu.Unlock()
	return reg, nil
}

// describe builds the descriptor the node announces.
func (n *Node) describe(rotation uint64) (directory.Descriptor, error) {
	d := directory.Descriptor{
		Identity:     directory.Key(n.keys.IdentityKey()),
		NoiseKey:     directory.Key(n.linkKey.Public),
		MixnetAddr:   n.cfg.announce(n.MixnetAddr()),
		HTTPAddr:     n.cfg.announce(n.HTTPAddr()),
		Capabilities: n.capabilities(),
		Version:      Version,
		IssuedAt:     n.opts.Now(),
	}
	d.RequiresPQ = n.linkKey.RequirePQ
	if n.clientsLn != nil {
		d.ClientsAddr = n.cfg.announce(n.clientsLn.Addr().String())
	}
	d.WGAddr = n.wgAddr()
	if n.opts.RouterKey != nil {
		rk := directory.Key(*n.opts.RouterKey)
		d.RouterKey = &rk
	}
	for _, r := range []uint64{rotation, rotation + 1} {
		k, err := n.keys.Sphinx(r)
		if err != nil {
			return d, fmt.Errorf("sphinx key for rotation %d: %w", r, err)
		}
		d.SphinxKeys = append(d.SphinxKeys, directory.SphinxKey{Rotation: r, Key: directory.Key(k.PublicKey())})
		kem, err := n.keys.KEM(r)
		if err != nil {
			return d, fmt.Errorf("KEM key for rotation %d: %w", r, err)
		}
		d.KEMKeys = append(d.KEMKeys, directory.RotationKEMKey{Rotation: r, Key: kem.PublicKey()})
		// Accept what we announce from now on: a peer may learn it from
		// the directory before our next topology arrives.
		n.linkKey.KEMKeys.Add(kem)
	}
	return d, nil
}

func (n *Node) capabilities() directory.Capabilities {
	switch n.cfg.Mode {
	case ModeEntryGateway:
		return directory.Capabilities{Entry: true}
	case ModeExitGateway:
		return directory.Capabilities{Entry: true, Exit: true}
	case ModeAuto:
		return directory.Capabilities{Mixnode: true, Entry: true, Exit: true}
	}
	return directory.Capabilities{Mixnode: true}
}

// apply makes a new topology current: it installs the Sphinx keys for its
// rotation and takes up the node's role.
func (n *Node) apply(t *directory.Topology) error {
	if old := n.topo.Load(); old != nil && (t.Epoch < old.Epoch || (t.Epoch == old.Epoch && !t.IssuedAt.After(old.IssuedAt))) {
		return nil // nothing newer
	}
	if err := n.installKeys(t); err != nil {
		return err
	}
	n.adopt(t)
	n.updateWireGuard(t)
	role, layer := t.RoleOf(directory.Key(n.keys.IdentityKey()))
	prev := n.state.Swap(&roleState{Epoch: t.Epoch, Rotation: t.Rotation, Role: role, Layer: layer})
	if prev.Role != role || prev.Layer != layer {
		n.log.Info("role", "epoch", t.Epoch, "role", role, "layer", layer, "was", prev.Role)
	}
	n.metrics.epoch.Set(float64(t.Epoch))
	return nil
}

// adopt makes t the current topology; the one of an earlier epoch it
// replaces is kept for the boundary grace (Node.nextHop).
func (n *Node) adopt(t *directory.Topology) {
	if old := n.topo.Load(); old != nil && t.Epoch > old.Epoch {
		n.prev.Store(&prevTopology{t: old, until: n.opts.Now().Add(n.layerGrace())})
	}
	n.topo.Store(t)
}

// layerGrace is how long after taking up a new epoch's topology the node
// still forwards along the previous epoch's layers (Node.nextHop). Packets
// built just before the boundary may wait in a client's send queue and then
// in up to three mixes' delays, each at most MaxDelay; a few of those, and
// never less than two minutes for clients whose clocks lag, cover them.
func (n *Node) layerGrace() time.Duration {
	return max(2*time.Minute, 4*n.cfg.MaxDelay.Duration)
}

// installKeys gives the mixer the keys a packet may be made for in epoch
// t.Epoch: the rotation's own key and, during the first epoch of a rotation,
// the previous rotation's, for packets built from the previous topology.
// The link listener gets the KEM keys of the same rotations and of the next
// one (announced already: a peer whose topology is a rotation ahead dials
// with it). Keys older than that are deleted from disk, Sphinx and KEM alike.
func (n *Node) installKeys(t *directory.Topology) error {
	want := []uint64{t.Rotation}
	if t.RotationEpochs > 0 && t.Epoch%t.RotationEpochs == 0 && t.Rotation > 0 {
		want = append(want, t.Rotation-1)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if slices.Equal(want, n.installed) {
		return nil
	}
	keys := make([]mixnode.RotationKey, 0, len(want))
	for _, r := range want {
		k, err := n.keys.Sphinx(r)
		if err != nil {
			return fmt.Errorf("sphinx key for rotation %d: %w", r, err)
		}
		keys = append(keys, mixnode.RotationKey{Rotation: r, Key: k})
	}
	kems := make([]*link.KEMKey, 0, len(want)+1)
	for _, r := range append([]uint64{t.Rotation + 1}, want...) {
		k, err := n.keys.KEM(r)
		if err != nil {
			return fmt.Errorf("KEM key for rotation %d: %w", r, err)
		}
		kems = append(kems, k)
	}
	if err := n.mixer.SetKeys(keys...); err != nil {
		return fmt.Errorf("install sphinx keys: %w", err)
	}
	n.linkKey.KEMKeys.Set(kems...)
	n.installed = want
	n.log.Info("sphinx and KEM keys", "epoch", t.Epoch, "rotations", want)
	if err := n.keys.Prune(slices.Min(want)); err != nil {
		n.log.Warn("prune old sphinx and KEM keys", "err", err)
	}
	return nil
}
