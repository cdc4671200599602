// Package replay remembers the Sphinx replay tags a node has seen, so that a
// packet replayed under the same key is dropped instead of being forwarded a
// second time (a replayed packet follows the same route, and watching where it
// goes again would undo the mixing).
//
// A node keeps one [Filter] per Sphinx key it holds. Tags are only comparable
// under one key, so a filter lives exactly as long as its key: when the key
// rotation ends the key and its filter are dropped together, and memory stays
// bounded by the keys held (two during the one-epoch overlap).
//
// # Structure
//
// A Filter is a blocked Bloom filter: each tag selects one 512-bit block (one
// cache line) and sets k bits inside it. A lookup therefore costs one cache
// miss however large the filter is, where a classic Bloom filter would touch k
// random cache lines. The price is a somewhat higher false-positive rate for the
// same memory, which [New] accounts for when it sizes the filter: it computes
// the blocked filter's false-positive rate exactly rather than
// using the classic formula.
//
// Bit positions are sliced straight from the tag, with no hashing. The tag is
// an HKDF-SHA256 output keyed by the shared secret of the packet and the node
// key, so its bits are already uniform and independent; hashing them again
// would add cost and no randomness. A sender knows its own packets' tags and
// could grind them to choose their blocks, but it cannot aim at honest packets'
// tags (it does not know them), and packing its own tags into a few blocks
// hurts fewer honest packets than spreading them out: the worst it can do is
// flood, which is no different from honest load.
//
// # Sizing
//
// A filter is sized for a capacity (the number of distinct tags it will see
// while its key lives; [CapacityFor] computes it from a packet rate and the key
// lifetime) and a false-positive target. Nym sizes for 2000 packets/s over 25 h
// (a 24-epoch rotation plus the 1-hour overlap) at 1e-5: 180 M tags, about
// 540 MB per filter, 1.1 GB while two keys overlap. Our default,
// [DefaultCapacity], assumes 500 packets/s averaged over the key's life, at the
// same 1e-5: 45 M tags, 167 MB per filter, 334 MB during the overlap (a blocked
// filter needs 30 bits per tag at 1e-5 where a classic one needs 24). The
// average, not the peak, is what fills the filter: a 2-core node tops out near
// 20,000 packets/s (the Sphinx CPU bound), but a node run flat out for a whole
// day is an overloaded node, and our networks are small. Operators of busier
// nodes set the capacity from their own measured rate.
//
// Past capacity the filter keeps working and never forgets a tag: a replay is
// never accepted. What degrades is the false-positive rate, which means honest
// packets dropped as if they were replays. [Filter.ExpectedFPRate] gives the
// rate for any number of inserted tags; with the default sizing it is 1e-5 at
// capacity, 2e-3 at twice the capacity and 0.027 at three times. A node should
// therefore watch its packet rate against the capacity it chose
// ([Filter.Inserted] counts the tags added).
//
// # Persistence
//
// A filter lives in memory, so a node restarted while its key is valid would
// forget every tag and forward each replayed packet once more. [Filter.Save]
// writes a filter atomically (temporary file, fsync, rename) in the format
// described in file.go, bound to a 32-byte value the caller chooses (the
// mixnode uses a hash of the Sphinx public key); [Load] reads it back and
// refuses a file of another binding, geometry or version, a truncated one,
// and one whose SHA-256 checksum does not match. Saving is safe while Seen
// runs, streams the bits in 64 KiB chunks and leaves all-zero stretches as
// holes in the file.
package replay
