// Package directory is the contract of the network directory: the documents
// (a node's self-signed [Descriptor], the [Topology] of an epoch that the
// directory authority signs), how to sign and verify them, when a topology is
// fresh, and [Client], which fetches and verifies topologies and registers
// descriptors. The authority that assigns roles and serves the documents is
// package mixnet/authority; clients and nodes link only this package.
//
// Every epoch the authority assigns roles (entry gateway, exit gateway, mix
// layers 1–3, standby) and publishes a topology signed with its ed25519 key.
// Clients and nodes fetch the topology with [Client] and verify it against
// the directory key they pinned.
//
// # Time
//
// Epoch n covers [genesis + n×length, genesis + (n+1)×length); genesis is
// fixed when the authority's data dir is created. Sphinx keys rotate every
// RotationEpochs epochs: rotation r = epoch / RotationEpochs, and its parity
// (r mod 2) travels in link frames. A node pre-announces its key for rotation
// r+1 during the last epoch of rotation r and keeps the old key through the
// first epoch of r+1. Each topology lists, per node, the keys it announced
// (at most two consecutive rotations); a node gets a role only if it has a key
// for the rotation of that epoch.
//
// A signature does not say when a topology is served, so [Client.Topology]
// also refuses one whose epoch ended more than one epoch ago (a replay) or
// that was issued, or starts, beyond [DefaultMaxClockSkew] in the future
// ([Topology.CheckFresh]).
//
// # What a node does
//
//  1. Fetch the topology ([Client.Topology]) to learn the epoch and rotation.
//  2. Sign a [Descriptor] with its identity key ([SignDescriptor]) and register
//     it ([Client.RegisterWithStatus]); repeat every
//     [Registration.RefreshInterval] with a fresh IssuedAt, and read
//     [Registration.Warnings]: they say what keeps it out of the next epoch.
//  3. Serve GET /api/v1/health on its HTTP address; the authority probes it
//     several times an epoch. Nodes that fail consecutive probes, score below
//     the minimum, or stop refreshing lose their role at the next boundary.
//  4. At each epoch boundary fetch the topology and play the role it assigns
//     ([Topology.RoleOf]).
//
// # Networks of authorities
//
// A network may have n directory authorities instead of one, named with
// their keys, URLs and a threshold k > n/2 in a [Network] file. Before each
// epoch every authority signs a [Vote] (the nodes it holds and the
// performance it measured); from the votes each computes the same consensus
// document (a [Topology] whose DirectoryKey is [Network.ID]) and the
// authorities collect each other's signatures over those bytes. A client made
// with [NewNetworkClient] asks the authorities in random order and accepts a
// [SignedConsensus] only with k valid signatures of distinct authorities of
// the file ([SignedConsensus.Verify]), fresh, and no older than the last one
// it accepted; with CachePath it keeps the last one on disk for when no
// authority answers. [SingleAuthority] is the old one URL and key, n = k = 1.
//
// While the published topology is incomplete (some role empty, as in a
// network that is starting), the authority re-assigns roles as soon as new
// nodes pass a probe instead of waiting for the next boundary, and it reissues
// the topology within an epoch when an assigned node changes its keys or
// addresses; [Topology.IssuedAt] tells the versions apart.
package directory
