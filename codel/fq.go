package codel

import (
	"errors"
	"time"
)

// FQ is flow queueing with CoDel per flow (FQ-CoDel, RFC 8290): packets are
// hashed by flow into a fixed set of Queues, each with its own CoDel state,
// served by deficit round robin, and a flow that was idle goes before the
// flows that keep a queue standing.
//
// One FIFO in front of a mixnet stream holds a ping, a DNS answer or a
// keystroke behind every packet of a download: measured through the local
// network at Nym's defaults, the RTT during an iperf3 download was 2–3× the
// idle RTT with one CoDel queue per session, because the exit's queue
// drains at the pace of the SURBs the client sends. Sparse flows never
// build a queue of their own, so here they wait for one dequeue
// opportunity, not for the download.
//
// Like Queue, FQ is not safe for concurrent use. Make it with NewFQ.
type FQ struct {
	cfg   Config
	flow  func([]byte) uint64
	flows []fqFlow
	// newFlows and oldFlows are RFC 8290's two lists, linked through
	// fqFlow.next; -1 ends a list.
	newFlows, oldFlows fqList
	quantum            int
	n, bytes           int
	stats              Stats // kept here, so that reading them costs no walk of the flows
}

type fqFlow struct {
	q       Queue
	deficit int
	list    *fqList // the list it is on; nil when on none
	next    int
}

type fqList struct{ head, tail int }

// Defaults of FQ's settings.
const (
	// DefaultFlows is far below RFC 8290's 1024: an exit keeps one FQ per
	// session, at about 200 bytes per flow queue, and a session carries
	// few flows at a time. Two flows share a queue with probability 1/32.
	DefaultFlows   = 32
	DefaultQuantum = 1514 // one Ethernet frame, as RFC 8290 suggests
)

// FQConfig configures an FQ. Zero fields take the defaults.
type FQConfig struct {
	// Config is each flow's CoDel (Target, Interval, MaxPacket, Release);
	// its MaxPackets and MaxBytes bound the whole FQ.
	Config
	// Flows is how many flow queues packets are hashed into (default
	// DefaultFlows); Quantum the bytes a flow may send per round
	// (default DefaultQuantum).
	Flows, Quantum int
	// Flow maps a packet to its flow; nil is IPFlow.
	Flow func(pkt []byte) uint64
}

// NewFQ returns an empty FQ.
func NewFQ(cfg FQConfig) (*FQ, error) {
	c, err := cfg.Config.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Flows < 0 || cfg.Quantum < 0 {
		return nil, errors.New("codel: negative FQConfig value")
	}
	if cfg.Flows == 0 {
		cfg.Flows = DefaultFlows
	}
	if cfg.Quantum == 0 {
		cfg.Quantum = DefaultQuantum
	}
	if cfg.Flow == nil {
		cfg.Flow = IPFlow
	}
	f := &FQ{cfg: c, flow: cfg.Flow, flows: make([]fqFlow, cfg.Flows), quantum: cfg.Quantum,
		newFlows: fqList{-1, -1}, oldFlows: fqList{-1, -1}}
	for i := range f.flows {
		// The shared limits are FQ's to enforce; a flow's own are
		// never the tighter ones.
		f.flows[i].q.cfg = c
		f.flows[i].next = -1
	}
	return f, nil
}

// Len is the number of packets queued, in all flows.
func (f *FQ) Len() int { return f.n }

// Bytes is the sum of the queued packets' lengths.
func (f *FQ) Bytes() int { return f.bytes }

// Stats returns the discard counters of all flows. The router reads them
// around every Pull, so they are counted as they happen, not summed here.
func (f *FQ) Stats() Stats { return f.stats }

// Push queues pkt, which arrived at now, in its flow, and takes it over as
// Queue.Push does. Over the hard limits it makes room by dropping at the
// head of the flow with the most bytes queued (RFC 8290's overload rule:
// the flow that caused the overload pays for it), and refuses pkt only when
// pkt's own flow is that flow and pkt alone is over the limit.
func (f *FQ) Push(pkt []byte, now time.Time) bool {
	if len(pkt) > f.cfg.MaxBytes {
		f.stats.Full++
		if f.cfg.Release != nil {
			f.cfg.Release(pkt)
		}
		return false
	}
	for f.n >= f.cfg.MaxPackets || f.bytes+len(pkt) > f.cfg.MaxBytes {
		f.dropFattest()
	}
	i := int(f.flow(pkt) % uint64(len(f.flows)))
	fl := &f.flows[i]
	fl.q.Push(pkt, now) // within the shared limits, so within its own
	f.n++
	f.bytes += len(pkt)
	if fl.list == nil {
		fl.deficit = f.quantum
		f.append(&f.newFlows, i)
	}
	return true
}

// dropFattest discards the head packet of the flow with the most bytes.
func (f *FQ) dropFattest() {
	fat := 0
	for i := range f.flows {
		if f.flows[i].q.bytes > f.flows[fat].q.bytes {
			fat = i
		}
	}
	q := &f.flows[fat].q
	e := q.popHead()
	f.n--
	f.bytes -= len(e.data)
	f.stats.Full++
	q.release(e.data)
}

// PopIf is one dequeue opportunity at now, as Queue.PopIf: the next flow in
// turn gives its head packet, after its CoDel has dropped what waited too
// long. ok is false when nothing is queued or the packet whose turn it is
// does not fit; it then stays at the head of its flow, and goes first next
// time.
func (f *FQ) PopIf(now time.Time, fits func(n int) bool) (pkt []byte, at time.Time, ok bool) {
	for {
		list := &f.newFlows
		if list.head < 0 {
			list = &f.oldFlows
		}
		if list.head < 0 {
			return nil, time.Time{}, false
		}
		i := list.head
		fl := &f.flows[i]
		if fl.deficit <= 0 {
			fl.deficit += f.quantum
			f.pop(list)
			f.append(&f.oldFlows, i)
			continue
		}
		before, beforeBytes := fl.q.Len(), fl.q.bytes
		pkt, at, ok = fl.q.PopIf(now, fits)
		// CoDel may have dropped at the flow's head on the way.
		f.n -= before - fl.q.Len()
		f.bytes -= beforeBytes - fl.q.bytes
		dropped := before - fl.q.Len()
		if ok {
			dropped--
		}
		f.stats.Sojourn += uint64(dropped)
		if ok {
			fl.deficit -= len(pkt)
			return pkt, at, true
		}
		if fl.q.Len() > 0 {
			return nil, time.Time{}, false // its head does not fit
		}
		// The flow ran empty. Off the new list it goes to the old one,
		// if that has flows waiting, so that a flow cannot stay new
		// by emptying at each turn (RFC 8290, section 4.2).
		f.pop(list)
		if list == &f.newFlows && f.oldFlows.head >= 0 {
			f.append(&f.oldFlows, i)
		}
	}
}

// Peek returns the packet PopIf would consider next, without dequeuing it
// or changing the turn; CoDel is not consulted, as in Queue.Peek.
func (f *FQ) Peek() (pkt []byte, ok bool) {
	var fallback []byte
	for _, list := range []*fqList{&f.newFlows, &f.oldFlows} {
		for i := list.head; i >= 0; i = f.flows[i].next {
			fl := &f.flows[i]
			head, ok := fl.q.Peek()
			if !ok {
				continue
			}
			if fl.deficit > 0 {
				return head, true
			}
			if fallback == nil {
				fallback = head
			}
		}
	}
	return fallback, fallback != nil
}

// Reset discards every queued packet through Config.Release, clears every
// flow's state and returns how many packets it discarded.
func (f *FQ) Reset() int {
	n := 0
	for i := range f.flows {
		n += f.flows[i].q.Reset()
		f.flows[i].deficit, f.flows[i].list, f.flows[i].next = 0, nil, -1
	}
	f.newFlows, f.oldFlows = fqList{-1, -1}, fqList{-1, -1}
	f.n, f.bytes = 0, 0
	f.stats.Reset += uint64(n)
	return n
}

func (f *FQ) append(l *fqList, i int) {
	fl := &f.flows[i]
	fl.list, fl.next = l, -1
	if l.tail >= 0 {
		f.flows[l.tail].next = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (f *FQ) pop(l *fqList) {
	i := l.head
	fl := &f.flows[i]
	l.head = fl.next
	if l.head < 0 {
		l.tail = -1
	}
	fl.list, fl.next = nil, -1
}
