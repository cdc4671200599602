// Package mixnode is the mixing pipeline of a mix node (Loopix-style
// continuous-time mixing):
//
//	Submit ─▶ input queue ─▶ worker pool: unwrap (Sphinx) with replay check ─┬─▶ Deliver (final hop)
//	                                                                          └─▶ delay stage ─▶ Forward
//
// The replay check sits inside the unwrap (sphinx's ProcessOnce), right
// after the header MAC: a replayed packet is refused before the payload
// cipher and the blinding of α, at less than half a fresh packet's cost.
//
// Each packet names its own delay, drawn by its sender from an exponential
// distribution; the node holds it that long and forwards it. Output order
// therefore follows the delays, not the arrival order, which is the whole point:
// an observer cannot match a packet leaving with one that arrived.
//
// Deadlines are absolute: arrival (the Submit call) plus the delay, so time
// spent queued and unwrapping counts toward the delay instead of adding to it,
// and a burst does not push later deadlines back.
//
// Held packets sit in a min-heap by deadline, released by one goroutine that
// sleeps until the earliest. Go's runtime timers wake up to 1 ms late on an
// idle Linux process, more than the added latency we allow per hop
// (< 0.5 ms median), so on Linux that goroutine sleeps in ppoll(2) on its own
// thread with 1 ns timer slack; the median added latency measured with
// TestDelayDistribution is about 30 µs.
//
// Every stage is bounded. A full input queue or too many held packets drop the
// packet and count it, so a flood costs packets, never memory or a blocked link
// reader. Every drop is counted by reason in Prometheus metrics.
//
// Sphinx keys rotate; a [Mixer] holds at most two at a time (the current
// rotation and, during the one-epoch overlap, the previous or next one), told
// apart by the rotation parity that each link frame carries. Each key has its
// own replay filter, dropped with the key. With Config.ReplayDir set, filters
// are saved there every Config.ReplayFlushInterval and when Run returns, and
// loaded back when a key is installed, so a restart does not let replays
// through (persist.go).
package mixnode
