package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// The send path pulls. A caller with a steady flow of packets (a tunnel, an
// exit's session) registers a Source, and the client asks it for the next
// packet exactly when one may go: a Poisson slot is coming, the link to the
// gateway is up and, for replies, a SURB is in hand. The caller keeps its
// own queue (and its own drop policy) up to that moment, so no queue inside
// the client fills, and nothing outside it has to guess the client's pace.
//
// Each stream runs on a goroutine of its own, which builds a few packets
// ahead (streamAhead): Pull, build, put it in line for a slot, repeat, and
// wait for a slot only with streamAhead packets in line. The Poisson stream hands its
// real slots round robin to the streams with a packet built and to the
// client's internal queue (reliable messages and their resends, SURB
// requests and grants, control packets pushed with SendRepliablePacket and
// Reply); a slot no one claims carries loop cover. With the Poisson stream
// off, each stream sends a packet as soon as it is built, or, paced
// (Stream.Pace), as soon as its pace allows.

// A Source supplies the packets of one stream. The client pulls: it calls
// Pull when the stream may send one packet now — a Poisson slot is free (or,
// with the Poisson stream off, the link has room) and, for a reply stream, a
// SURB is in hand. Pull of one stream is never called concurrently with
// itself; Pulls of different streams may run concurrently.
type Source interface {
	// Pull writes the next packet's data into p and reports true, or reports
	// false when it has nothing to send now; the stream then sleeps until
	// Wake. Pull must not block.
	Pull(p *Payload) bool
}

// Payload is the data of one packet being built, written in place into the
// buffer that carries the packet to the gateway (headroom for every header
// below it is already reserved).
type Payload struct {
	buf     []byte // the packet's wire buffer
	dataOff int    // where the data starts in buf
	reply   bool
	nSURBs  int
	room    int  // data bytes that fit
	n       int  // data bytes recorded by SetData
	set     bool // SetData was called
}

// ErrPayload is wrapped by the errors of Payload's methods: the source broke
// the contract.
var ErrPayload = errors.New("client: payload misuse")

// reset prepares p for a packet of the stream's kind; a reply's room is
// what its SURB's size holds (buf is a buffer of that size).
func (p *Payload) reset(buf []byte, reply bool, size sphinx.Size) {
	*p = Payload{buf: buf, reply: reply, dataOff: dataOffset(reply, 0)}
	if reply {
		p.room = replyDataCapacityOf(size)
	} else {
		p.room = repliableDataCapacity(0)
	}
}

// SetSURBs makes the packet carry n reply SURBs (forward streams only; a
// reply stream's packets carry none) and returns how many bytes of data then
// fit. Call it before writing any data; without a call the packet carries
// none. Error when n SURBs do not fit one packet.
func (p *Payload) SetSURBs(n int) (room int, err error) {
	switch {
	case p.set:
		return p.room, fmt.Errorf("%w: SetSURBs after SetData", ErrPayload)
	case p.reply && n != 0:
		return p.room, fmt.Errorf("%w: a reply carries no SURBs", ErrPayload)
	case n < 0 || n > maxSURBsPerMessage || repliableDataCapacity(n) < 0:
		return p.room, fmt.Errorf("%w: %d SURBs do not fit one packet", ErrMessageTooLarge, n)
	}
	if p.reply {
		return p.room, nil
	}
	p.nSURBs = n
	p.room = repliableDataCapacity(n)
	p.dataOff = dataOffset(false, n)
	return p.room, nil
}

// Buf returns the packet's data buffer: len 0 (or the data so far), cap the
// bytes of data that fit. Append to it in place and hand the result to SetData.
func (p *Payload) Buf() []byte {
	return p.buf[p.dataOff : p.dataOff+p.n : p.dataOff+p.room]
}

// SetData records b as the packet's data. b must be Buf() appended within its
// capacity (same backing array); otherwise error.
func (p *Payload) SetData(b []byte) error {
	if len(b) > p.room {
		return fmt.Errorf("%w: %d bytes of data, %d fit", ErrPayload, len(b), p.room)
	}
	if len(b) > 0 && &b[0] != &p.buf[p.dataOff] {
		return fmt.Errorf("%w: data not in the payload's buffer", ErrPayload)
	}
	p.n, p.set = len(b), true
	return nil
}

// Stream is a registered Source.
type Stream struct {
	c         *Client
	src       Source
	reply     bool
	to        Address // forward streams
	tag       AnonymousSenderTag
	onStarved func()

	ctx    context.Context // ends with Close or the client
	cancel context.CancelFunc
	wake   chan struct{} // one token: woken since the last empty Pull
	sent   chan struct{} // a token per packet a slot took (streamAhead room)

	// The stream's goroutine's: the packets built, used in turn (a slot
	// takes them oldest first, so the next one to build is free once
	// ahead < streamAhead), and how many are in line or being sent.
	pkts  [streamAhead]builtPacket
	turn  int
	ahead int
	spare []byte // a buffer an empty Pull left unused

	// Under c.sched.mu.
	built   []*builtPacket // waiting for a slot, oldest first
	starved bool           // reply stream out of SURBs; onStarved was called

	// Pacing (Pace): the settings, and the goroutine's clock: when the
	// next packet is due if the stream kept its pace exactly (GCRA's
	// theoretical arrival time), and its one timer.
	pace      atomic.Pointer[pacing]
	paceDue   time.Time
	paceTimer *time.Timer
}

// pacing is a stream's Pace.
type pacing struct {
	interval time.Duration
	burst    int
}

// streamAhead is how many packets a stream builds ahead of its slots. With
// one, the next packet was pulled and built only once the last had gone:
// under load (the goroutine's wake-up, a build of a millisecond or more)
// that takes a few milliseconds, and every Poisson slot that came sooner
// (at 200/s, a third of them: the gaps are exponential) carried loop cover
// while data waited. The tunnel's upload measured 124 DataUps/s in its 200
// slots/s so. Three ride out a burst of late ticks too (runPoisson serves
// the deadlines a late timer missed at once). The price: a packet's data
// leaves the source's queue up to three slots before its slot, where the
// source's CoDel no longer sees it.
const streamAhead = 3

// Pace makes the stream pull no faster than one packet per interval on
// average, and at most burst at once after a quiet spell; zero interval
// (the default) takes every packet the source has as soon as it may go.
//
// Why: a reply stream's packets go to a client whose gateway shapes its
// downstream (gatewire.Shape) to a constant number of slots per second.
// Unpaced, the stream sends a reply as soon as it holds a SURB and any
// data, so under load replies leave with a packet or two each, spend the
// client's slots on padding and queue at its gateway, where nothing keeps
// the queue short. Paced at the rate the client's downstream takes them,
// the source's queue gathers an interval's data per Pull, so replies
// leave full and the queue stands in the source, under its own CoDel.
// The stream's goroutine is the clock: it waits on its one timer only
// when it has something to send before its time. The burst lets a quiet
// stream answer a few small packets (a DNS answer, a handshake) at once.
// Safe to call at any time, from any goroutine; it applies from the next
// packet.
func (s *Stream) Pace(interval time.Duration, burst int) {
	if interval <= 0 {
		s.pace.Store(nil)
		return
	}
	s.pace.Store(&pacing{interval: interval, burst: max(burst, 1)})
}

// waitPace waits until the stream's pace lets one more packet go; false
// when the stream ends meanwhile. The stream's goroutine's.
func (s *Stream) waitPace() bool {
	pc := s.pace.Load()
	if pc == nil {
		return true
	}
	// GCRA: a packet may go once now is within burst-1 intervals of the
	// time it is due.
	wait := time.Until(s.paceDue.Add(-time.Duration(pc.burst-1) * pc.interval))
	if wait <= 0 {
		return true
	}
	if s.paceTimer == nil {
		s.paceTimer = time.NewTimer(wait)
	} else {
		s.paceTimer.Reset(wait)
	}
	select {
	case <-s.paceTimer.C:
		return true
	case <-s.ctx.Done():
		s.paceTimer.Stop()
		return false
	}
}

// paced counts one packet the source gave against the pace.
func (s *Stream) paced(now time.Time) {
	if pc := s.pace.Load(); pc != nil {
		if s.paceDue.Before(now) {
			s.paceDue = now
		}
		s.paceDue = s.paceDue.Add(pc.interval)
	}
}

// Wake tells the client the stream's source has data (again). It never
// blocks and may be called from any goroutine, including from inside Pull.
func (s *Stream) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close unregisters the stream; a packet built ahead and not yet sent is
// dropped. Idempotent. A Pull already running may finish, but none starts
// after Close returns and what it wrote is not sent.
func (s *Stream) Close() error {
	s.cancel()
	s.c.sched.remove(s)
	return nil
}

// OpenStream registers src as a stream of unacknowledged packets to `to`,
// each carrying our sender tag for `to` (as SendRepliablePacket does) and the
// reply SURBs the source asks for with SetSURBs.
func (c *Client) OpenStream(to Address, src Source) (*Stream, error) {
	if err := c.routes.knows(to.Gateway); err != nil {
		return nil, fmt.Errorf("client: stream to %s: %w", to, err)
	}
	s := c.newStream(src)
	s.to, s.tag = to, c.replyKeys.tagFor(to)
	return s, c.startStream(s)
}

// OpenReplyStream registers src as a stream of replies to tag, one SURB per
// packet: Pull is called only with a SURB in hand. onStarved (may be nil) is
// called, without blocking, when the stream is awake but the client holds no
// SURB for tag (the client has then asked the sender for more, if it could).
// It is called again after SURBs arrived and ran out again, not repeatedly.
// onStarved runs on the stream's goroutine, holding no lock of the client:
// it must return promptly (it may call Wake or Close).
func (c *Client) OpenReplyStream(tag AnonymousSenderTag, src Source, onStarved func()) (*Stream, error) {
	if tag.IsZero() {
		return nil, errors.New("client: reply stream to the zero sender tag")
	}
	s := c.newStream(src)
	s.reply, s.tag, s.onStarved = true, tag, onStarved
	return s, c.startStream(s)
}

func (c *Client) newStream(src Source) *Stream {
	s := &Stream{c: c, src: src, wake: make(chan struct{}, 1), sent: make(chan struct{}, streamAhead)}
	s.ctx, s.cancel = context.WithCancel(c.ctx)
	return s
}

func (c *Client) startStream(s *Stream) error {
	if !c.sched.add(s) {
		s.cancel()
		return errClosed
	}
	go func() {
		defer c.wg.Done()
		defer c.sched.remove(s)
		s.run()
	}()
	return nil
}

// run is the stream's goroutine: it sleeps until woken, then pulls and sends
// until the source has nothing more.
func (s *Stream) run() {
	var p Payload
	for {
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return
		}
		for s.ctx.Err() == nil {
			if !s.pullOne(&p) {
				break
			}
		}
	}
}

// pullOne pulls one packet and sends it, or puts it in line for a slot. It
// reports false when the stream should sleep until woken: the source had
// nothing, or a reply stream has no SURB.
func (s *Stream) pullOne(p *Payload) bool {
	c := s.c
	direct := c.cfg.Loopix.SendInterval <= 0
	if !s.waitPace() {
		return false
	}
	if !direct && !s.room() {
		return false
	}
	conn, err := c.link.wait(s.ctx)
	if err != nil {
		return false
	}
	if direct {
		// No Poisson slot to wait for: wait for room in the link instead,
		// so that a slow gateway connection holds packets back in the
		// source's queue (where its CoDel sees them) rather than
		// overflowing the link's queue.
		select {
		case c.linkRoom <- struct{}{}:
		case <-s.ctx.Done():
			return false
		}
	}
	sent := false
	defer func() {
		if direct && !sent {
			<-c.linkRoom
		}
	}()
	var surb heldSURB
	if s.reply {
		var ok bool
		if surb, ok = c.surbs.takeOne(s.tag, time.Now()); !ok {
			s.starve()
			return false
		}
		c.sched.fed(s)
	}
	size := sphinx.SizeRegular
	if s.reply {
		size = surb.s.size()
	}
	buf := s.spare
	if buf == nil || len(buf) != gatewire.SendHeaderLen+size.PacketLen() {
		releaseWire(buf) // a spare of the other size
		buf = newWireBufferOf(size)
	}
	s.spare = nil
	p.reset(buf, s.reply, size)
	if s.ctx.Err() != nil || !s.src.Pull(p) {
		if s.reply {
			c.surbs.unshift(s.tag, surb)
		}
		s.spare = buf // an empty Pull costs no allocation either
		return false
	}
	if s.ctx.Err() != nil { // closed during Pull: drop it
		if s.reply {
			c.surbs.unshift(s.tag, surb)
		}
		return false
	}
	s.paced(time.Now())
	b, err := s.build(p, &surb.s)
	if s.reply {
		c.stats.surbsSpent.Add(1)
		c.afterReply(s.tag)
	}
	if err != nil {
		c.stats.buildFailures.Add(1)
		c.stats.packetsDropped.Add(1)
		c.logLimited("cannot build stream packet", "err", err)
		return true // the data is lost, as on a full link; the source goes on
	}
	b.stream = true
	if direct {
		b.done = c.doneDirect // returns the token once the link copied it
		sent = true
		c.transmit(conn, b, time.Now())
		return true
	}
	// In line for a slot; the next is pulled at once if there is room.
	if !c.sched.offer(s, b) {
		return false
	}
	s.ahead++
	s.turn = (s.turn + 1) % streamAhead
	return true
}

// room counts the packets slots took since the last call, and waits for
// one with streamAhead in line: the next packet to build reuses the oldest.
// False when the stream ends.
func (s *Stream) room() bool {
	for {
		select {
		case <-s.sent:
			s.ahead--
			continue
		default:
		}
		if s.ahead < streamAhead {
			return true
		}
		select {
		case <-s.sent:
			s.ahead--
		case <-s.ctx.Done():
			return false
		}
	}
}

// build completes the packet whose data the source wrote into p; a reply
// goes through surb. The packet is one of s's own (pkts), used again once
// the slot took it.
func (s *Stream) build(p *Payload, surb *replySURB) (*builtPacket, error) {
	b := &s.pkts[s.turn]
	if s.reply {
		return b, s.c.buildReplyStream(b, surb, p)
	}
	return b, s.c.buildForwardStream(b, s, p)
}

// starve records that a reply stream found no SURB and tells its owner,
// once per episode.
func (s *Stream) starve() {
	if !s.c.sched.starve(s) {
		return
	}
	// SURBs that arrived between takeOne and starve found no starved
	// stream to wake: look again now that s is on the list.
	if s.c.surbs.count(s.tag) > 0 {
		s.c.sched.fed(s)
		s.Wake()
		return
	}
	if s.onStarved != nil {
		s.onStarved()
	}
}

// afterReply asks the sender for more SURBs, through one of them, when a
// reply stream has spent its supply down to the low-water mark. The request
// goes on the internal queue without waiting: when the window is full it is
// skipped, and asked again on a later packet.
func (c *Client) afterReply(tag AnonymousSenderTag) {
	req, want := c.surbs.requestIfLow(tag, time.Now())
	if req == nil {
		return
	}
	if err := c.requestSURBsNow(req, want); err != nil {
		c.surbs.unshift(tag, heldSURB{s: *req, at: time.Now()})
		c.logLimited("cannot ask for more SURBs", "err", err)
	}
}

// scheduler hands the real slots of the Poisson stream out, round robin,
// to the streams with a packet built and to the internal queue.
type scheduler struct {
	c      *Client
	mu     sync.Mutex
	closed bool
	// ring holds, in turn order, the streams with a packet built, and
	// internal (nil) always once: the client's own queue takes its turn
	// among them.
	ring    []*Stream
	streams map[*Stream]struct{}
	// starved are the reply streams, by tag, waiting for SURBs.
	starved map[AnonymousSenderTag]map[*Stream]struct{}
}

func newScheduler(c *Client) *scheduler {
	return &scheduler{c: c, ring: []*Stream{nil}, streams: map[*Stream]struct{}{}, starved: map[AnonymousSenderTag]map[*Stream]struct{}{}}
}

// add registers s and counts its goroutine in the client's wait group,
// unless the client is closing.
func (q *scheduler) add(s *Stream) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.c.ctx.Err() != nil {
		return false
	}
	q.streams[s] = struct{}{}
	q.c.wg.Add(1)
	return true
}

// close refuses new streams; the client is closing.
func (q *scheduler) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// remove forgets s and drops its built packets.
func (q *scheduler) remove(s *Stream) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.streams, s)
	if len(s.built) > 0 {
		s.built = nil
		for i, e := range q.ring {
			if e == s {
				q.ring = append(q.ring[:i], q.ring[i+1:]...)
				break
			}
		}
	}
	q.unstarve(s)
}

// offer puts one of s's built packets in line for a slot. The ring holds s
// once however many it has built, so streams keep taking turns.
func (q *scheduler) offer(s *Stream, b *builtPacket) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.streams[s]; !ok || s.ctx.Err() != nil {
		return false
	}
	if len(s.built) == 0 {
		q.ring = append(q.ring, s)
	}
	s.built = append(s.built, b)
	return true
}

// next takes the packet for a real slot: the next in turn, the internal
// queue included, and the stream it is from (nil for the internal queue).
// nil means loop cover. The caller calls the stream's sentOne once the
// packet is sent.
func (q *scheduler) next() (*builtPacket, *Stream) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for range len(q.ring) {
		s := q.ring[0]
		q.ring = q.ring[1:]
		if s == nil {
			q.ring = append(q.ring, nil) // internal stays in the ring
			select {
			case p := <-q.c.ready:
				return p, nil
			default:
				continue
			}
		}
		b := s.built[0]
		n := copy(s.built, s.built[1:]) // at most streamAhead: no ring buffer needed
		s.built[n] = nil
		s.built = s.built[:n]
		if n > 0 {
			q.ring = append(q.ring, s) // its next turn
		}
		return b, s
	}
	return nil, nil
}

// sentOne tells s its oldest packet went out: it may build another.
func (s *Stream) sentOne() {
	s.sent <- struct{}{} // never blocks: at most streamAhead built per stream
}

// starve marks s as waiting for SURBs; it reports whether it was not
// already, so that onStarved is called once per episode.
func (q *scheduler) starve(s *Stream) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if s.starved {
		return false
	}
	s.starved = true
	m := q.starved[s.tag]
	if m == nil {
		m = map[*Stream]struct{}{}
		q.starved[s.tag] = m
	}
	m[s] = struct{}{}
	return true
}

// fed ends s's starvation episode: it holds a SURB again.
func (q *scheduler) fed(s *Stream) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.unstarve(s)
}

func (q *scheduler) unstarve(s *Stream) {
	if !s.starved {
		return
	}
	s.starved = false
	if m := q.starved[s.tag]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(q.starved, s.tag)
		}
	}
}

// surbsArrived wakes the reply streams of tag that were starved.
func (q *scheduler) surbsArrived(tag AnonymousSenderTag) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for s := range q.starved[tag] {
		s.Wake()
	}
}

// The pace a shaped downstream takes replies at (Loopix.ReplyInterval).
const (
	// loadedCoverShare is the share of the Poisson stream's slots still
	// loop cover while the tunnel downloads: the rest carry its acks and
	// SURBs, and what comes back for them is an ack of a few dozen bytes,
	// where loop cover comes back as a whole regular delivery. Measured
	// at anonymous-plus in the local network: during an iperf3 download
	// ~121 of the 200 slots/s carried data, and what was not a reply took
	// ~42 of the 167 downstream slots/s. A quarter (8.0 ms, 124 replies/s)
	// filled the downstream to the last slot: the gateway's queue grew and
	// the download fell to 1.2-3.4 Mbit/s in three runs, against 5.5-5.7
	// at a half (9.1 ms) and 4.5-5.2 at 10.3 ms.
	loadedCoverShare = 0.5
	// replyHeadroom keeps the replies' rate below what the slots left
	// take: replies reach the gateway in bursts (every hop delays each
	// by its own exponential draw), and a rate at the slots' very limit
	// would queue there without bound.
	replyHeadroom = 0.9
)

// ReplyInterval is the mean interval at which a shaped downstream
// (DownstreamInterval) has a slot for a reply through one of this client's
// SURBs while the tunnel downloads: the slots per second, less those that
// carry the extended loop cover, the returning loop cover of the other
// streams (several regular deliveries to a slot) and the acks, with
// headroom. A reply stream that pulls no faster (Stream.Pace) sends full
// replies under load and leaves the queue at its own end. Zero when the
// downstream is unshaped or its slots leave no room for replies.
func (l Loopix) ReplyInterval() time.Duration {
	if l.DownstreamInterval <= 0 {
		return 0
	}
	perSec := func(d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return float64(time.Second) / float64(d)
	}
	room := gatewire.SlotRoom(l.DownstreamFrameLen())
	// The slot room a delivery of a packet takes: all of the room of a
	// frame sized to that delivery.
	deliveryCost := func(packetLen int) int { return gatewire.SlotRoom(gatewire.SlotLen(packetLen)) }
	// How many regular deliveries, and how many replies, share a slot.
	regular := float64(room / deliveryCost(sphinx.RegularPacketSize))
	replySize := sphinx.RegularPacketSize
	if l.ExtendedReplies {
		replySize = sphinx.ExtendedPacketSize
	}
	replies := float64(room / deliveryCost(replySize))
	taken := perSec(l.ExtendedCoverInterval) +
		(perSec(l.CoverInterval)+loadedCoverShare*perSec(l.SendInterval))/regular
	free := (perSec(l.DownstreamInterval) - taken) * replies * replyHeadroom
	if free <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / free).Round(time.Microsecond)
}
