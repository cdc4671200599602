// Package router is the exit's IP packet router, independent of the
// transport: it keeps one session per anonymous client (its addresses from
// the pool, its upstream resequenced, filtered and written to the exit's
// TUN) and queues the internet's answers for it, one CoDel queue per
// session.
//
// The Router does no I/O of its own. The exit's mixnet glue hands it each
// request payload with the sender tag it came with (Submit, or
// HandleRequest), answers control requests through Config.Reply, and opens
// a stream per session (Config.OpenStream) that pulls the session's
// downstream data (Downstream.Pull) whenever it holds a SURB to carry it;
// the exit's TUN reader calls FromTUN. So the timing of everything the exit
// sends is decided by the mixnet transport, never by a flush timer here,
// and a packet waits for a SURB only in its session's queue, where CoDel
// sees it.
package router
