package router

import "sync"

// Defaults of the request queues (Config.MaxSenderRequests and
// Config.MaxPendingRequests). A sender's worker only falls behind when its
// replies wait (CanReply makes that rare) or the machine is overloaded; the
// per-sender bound is generous so that a busy tunnel's bursts of Data on a
// loaded exit are not dropped, which the old receive loop did not do
// either (it held the mixnet client back instead).
const (
	DefaultMaxSenderRequests  = 1024
	DefaultMaxPendingRequests = 16384
)

// requestQueue is one sender's requests waiting for its worker.
type requestQueue struct {
	msgs [][]byte
}

// dispatcher runs each sender's requests in order on a worker of its own, so
// that one sender whose replies are slow (no SURBs, a full send queue) holds
// up only itself. A worker lives while its sender has requests queued. The
// queues are bounded per sender and in all; what does not fit is dropped
// and counted: the mixnet loses packets anyway, and clients retry.
type dispatcher struct {
	mu      sync.Mutex
	queues  map[SessionKey]*requestQueue
	pending int  // requests queued, all senders
	closed  bool // Close began: nothing more is taken
	wg      sync.WaitGroup
}

// Submit hands a request to the router without waiting for it: the
// sender's worker runs HandleRequest. It reports false when the request was
// dropped because the sender's queue or the router's is full, or the router
// is shutting down. The router owns msg from then on.
func (r *Router) Submit(key SessionKey, msg []byte) bool {
	d := &r.dispatch
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	q := d.queues[key]
	if (q != nil && len(q.msgs) >= r.cfg.MaxSenderRequests) || d.pending >= r.cfg.MaxPendingRequests {
		r.stats.requestsQueueFull.Add(1)
		return false
	}
	d.pending++
	if q != nil {
		q.msgs = append(q.msgs, msg)
		return true
	}
	q = &requestQueue{msgs: [][]byte{msg}}
	d.queues[key] = q
	d.wg.Add(1)
	go r.serveSender(key, q)
	return true
}

// serveSender handles key's requests until its queue is empty.
func (r *Router) serveSender(key SessionKey, q *requestQueue) {
	d := &r.dispatch
	defer d.wg.Done()
	for {
		d.mu.Lock()
		if len(q.msgs) == 0 {
			delete(d.queues, key)
			d.mu.Unlock()
			return
		}
		msg := q.msgs[0]
		q.msgs[0] = nil
		q.msgs = q.msgs[1:]
		d.pending--
		d.mu.Unlock()
		r.HandleRequest(key, msg)
	}
}

// stopDispatch refuses further requests and waits for the workers to finish
// the queued ones.
func (r *Router) stopDispatch() {
	d := &r.dispatch
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.wg.Wait()
}
