// Package sphinx is the mixnet's packet format: it creates forward packets,
// SURBs and the replies built from them, and processes a packet at a hop
// (one layer off, the replay tag checked before anything costly). It is
// pure computation: no I/O, no clocks, no goroutines. The geometry follows
// Nym's (up to 5 hops, a 348-byte header, 2048-byte messages); the choice of
// primitives is explained in the README's Sphinx section.
package sphinx
