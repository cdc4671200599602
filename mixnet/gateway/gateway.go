// Package gateway is the client-facing side of a nym-node holding the entry or
// exit gateway role.
//
// Clients connect with link (Noise XK over TCP). The handshake authenticates
// a client by its static X25519 key, which is also its address inside Sphinx
// packets, so connecting is registering: there is nothing more to it.
//
// Outbound, a client's gatewire.Send is handed unchanged to the node's
// Forward callback for its first hop; the gateway never unwraps it.
//
// Inbound, the node calls Deliver for every packet whose last hop is this
// node. The gateway sends the packet's SURB-ack back into the mixnet, then
// hands the payload to a local service registered for the address (the exit's
// IP packet router), or to the client with that identity: straight onto its
// connection when it is online, otherwise into a bbolt file in the node's data
// directory. Stored packets survive restarts, go out in order when the client
// reconnects, and are deleted only once the client confirms them with
// gatewire.Received, or when their TTL passes.
//
// The database stays bounded however many identities come and go: a new
// identity that has not yet stayed connected for RecordClientsAfter holds
// at most one of MaxProvisionalClients records, a client with nothing stored that has not been seen
// for ClientRetention is forgotten, and beyond MaxStoredClients recorded
// identities a new one is served while connected but not recorded.
//
// One client cannot crowd out the others: its packets into the mixnet pass
// a token bucket of its own (ClientRate, ClientBurst) and one shared with
// the other clients of its source address (SourceRate, SourceBurst), a link on which nothing arrives
// for IdleTimeout is closed, and one source address holds at most
// MaxClientsPerIP links and MaxHandshakesPerIP handshakes.
//
// With Tickets.Required, clients pay with anonymous bandwidth tickets
// (package mixnet/ticket): each accepted ticket buys a quota of bytes,
// metered both ways (meter.go); without bytes a client forwards nothing,
// gets nothing delivered or stored, is not recorded, and is closed after
// Tickets.Grace. Spent serials are kept in a bbolt file of their own
// (spent.go) and redeemed with the authorities (redeem.go).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/internal/promreg"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// Defaults for zero Config fields.
const (
	DefaultMaxClients     = 8192     // as Nym's gateways
	DefaultMaxStoredBytes = 32 << 20 // per client: some 16 000 regular packets
	DefaultMaxBadMessages = 16
	DefaultMessageTTL     = 24 * time.Hour // as Nym's gateways
	DefaultSweepInterval  = time.Hour      // as Nym's stale-message cleaner
	DefaultStoreQueueLen  = 8192

	// DefaultClientRetention is how long an idle client with nothing
	// stored stays recorded. Forgetting a client costs it only this: until
	// it reconnects, packets for it are dropped unacknowledged (their
	// senders retransmit) instead of being stored. A week covers a laptop
	// shut for a long weekend or a holiday, while an identity made up and
	// abandoned holds its place under MaxStoredClients for no more than a
	// week. It is 7 × DefaultMessageTTL, comfortably above the TTL.
	DefaultClientRetention = 7 * 24 * time.Hour
	// DefaultMaxStoredClients bounds recorded identities. A record costs a
	// few hundred bytes on disk and in memory, so the cap holds both to
	// some tens of MB; it is over twelve times DefaultMaxClients, room for
	// the distinct clients a busy gateway sees within DefaultClientRetention
	// while a flood of fresh identities still cannot grow the file.
	DefaultMaxStoredClients = 100_000

	// DefaultClientRate bounds the packets per second one client may send
	// into the mixnet; DefaultClientBurst is how many it may send at once
	// after a quiet spell. Nym's default Loopix client sends some 55
	// packets/s with cover and acks, the no-delay "fast" profile pushes bulk
	// at up to ~1000/s, and constant-rate profiles of up to 1000/s are
	// planned: 2000/s is twice the fastest, and a burst of two seconds of
	// it absorbs a client's catch-up after a stall. One client flooding at
	// link speed (tens of thousands per second) is cut to this, so the mix
	// layer behind the gateway keeps room for everybody else.
	DefaultClientRate  = 2000
	DefaultClientBurst = 4000
	// DefaultSourceRate and DefaultSourceBurst bound all clients of one
	// source address together: four clients at full ClientRate, so a
	// household behind one NAT is not held back, while one host cannot
	// multiply ClientRate by MaxClientsPerIP identities.
	DefaultSourceRate  = 4 * DefaultClientRate
	DefaultSourceBurst = 4 * DefaultClientBurst
	// DefaultIdleTimeout closes a client link on which nothing arrived for
	// this long. A Loopix client sends cover several times a second, so it
	// is never idle; five minutes spares clients without cover that pause,
	// while an idle link cannot hold a MaxClients slot for ever.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultMaxClientsPerIP bounds the client links from one source (an
	// IPv4 address or IPv6 /64): room for a household or office behind one
	// NAT, while filling MaxClients takes a hundred-odd addresses.
	DefaultMaxClientsPerIP = 64
	// DefaultRecordClientsAfter is how long a new identity must stay
	// connected before it is recorded (see Config.RecordClientsAfter). A
	// client sticks with its gateway for its whole session, so it passes
	// this within its first minute, while minting identities that are
	// recorded costs an attacker a connection held this long each, out of
	// MaxClientsPerIP per address.
	DefaultRecordClientsAfter = 30 * time.Second
	// DefaultMaxProvisionalClients is about 1% of DefaultMaxStoredClients:
	// what a flood of throwaway identities can take at most, leaving the
	// rest to clients that stay.
	DefaultMaxProvisionalClients = 1024
	// DefaultMaxStoredBytesTotal bounds everything stored, over all
	// clients: 64 full per-client stores, or about a million packets. Past
	// it the largest stores lose their oldest packets first, so a few
	// heavy or abandoned stores cannot crowd out everybody else's.
	DefaultMaxStoredBytesTotal = 2 << 30
	// DefaultMaxDownstreamBytes caps one client's constant-rate downstream
	// at 4 MB/s (32 Mbit/s): well above what the anonymous profiles ask
	// (about 0.2 and 1 MB/s), while a client cannot make the gateway
	// send without bound on its behalf.
	DefaultMaxDownstreamBytes = 4 << 20
	// DefaultDownstreamQueue is how many messages wait in a shaped
	// client's queue before live deliveries go to the store: about a
	// second of the anonymous-plus stream, 2.5 s of the default one.
	DefaultDownstreamQueue = 256
)

// Config configures a Gateway.
type Config struct {
	// Static is the node's Noise key pair; clients find its public half in
	// the signed topology.
	Static link.KeyPair
	// DataDir holds the database of stored messages (gateway.db).
	DataDir string
	// Forward puts a packet on the link to firstHop, with the key-rotation
	// parity oddParity, and reports whether it was queued. It owns pkt. It
	// is called from client connections and from Deliver, concurrently, and
	// must not block.
	Forward func(firstHop [sphinx.AddressSize]byte, pkt []byte, oddParity bool) bool

	// MaxClients bounds connected clients; one more is told "gateway full"
	// and closed. Default DefaultMaxClients.
	MaxClients int
	// MaxStoredBytes bounds what is stored for one client; beyond it new
	// packets for that client are dropped, and it is told how many on its
	// next connection. Default DefaultMaxStoredBytes.
	MaxStoredBytes int64
	// MaxBadMessages is how many malformed messages one connection may send
	// before it is closed. Default DefaultMaxBadMessages.
	MaxBadMessages int
	// MessageTTL is how long a stored packet waits for its client. Default
	// DefaultMessageTTL.
	MessageTTL time.Duration
	// SweepInterval is how often expired packets are deleted. Default the
	// smaller of DefaultSweepInterval and MessageTTL/4.
	SweepInterval time.Duration
	// StoreQueueLen bounds the database operations waiting to be written;
	// packets that find it full are dropped and counted. Default
	// DefaultStoreQueueLen.
	StoreQueueLen int
	// ClientRetention is how long a client that is not connected and has
	// nothing stored stays recorded after it was last seen (connected,
	// disconnected, or had a packet stored). Then the sweep deletes its
	// record, and until it connects again packets for it are dropped as
	// for an unknown address. It must exceed MessageTTL, so that a client
	// is remembered well past its last stored packet. Default
	// DefaultClientRetention, or 7 × MessageTTL if that is longer.
	ClientRetention time.Duration
	// MaxStoredClients bounds the client identities recorded in the
	// database. Beyond it a client never seen before is still served while
	// it is connected, but it is not recorded: packets for it that cannot
	// go out live are dropped, not stored, and it is forgotten when it
	// disconnects. Recorded clients are unaffected. Default
	// DefaultMaxStoredClients.
	MaxStoredClients int
	// MaxStoredBytesTotal bounds what is stored for all clients together.
	// When a commit would pass it, the clients with the most stored lose
	// their oldest packets until the total is back under it (a little
	// below, so eviction runs in batches); each evicted packet counts as
	// dropped for its client, which is told on its next connection.
	// Default DefaultMaxStoredBytesTotal.
	MaxStoredBytesTotal int64
	// ClientRate bounds the packets per second one client identity may
	// send into the mixnet (over its one link), with bursts of up to
	// ClientBurst; excess packets are dropped and counted. Defaults
	// DefaultClientRate and DefaultClientBurst.
	ClientRate  float64
	ClientBurst int
	// SourceRate and SourceBurst are a second bucket, shared by all the
	// clients connected from one source address (IPv6: one /64). Defaults
	// DefaultSourceRate and DefaultSourceBurst.
	SourceRate  float64
	SourceBurst int
	// IdleTimeout closes a client link on which nothing has arrived for
	// that long. Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxClientsPerIP bounds the client links from one source address
	// (IPv6: one /64). Default DefaultMaxClientsPerIP.
	MaxClientsPerIP int
	// MaxHandshakesPerIP bounds the handshakes in progress from one source
	// address, and FirstMessageTimeout how long a connection may stay
	// silent before its handshake. Defaults: the link package's.
	MaxHandshakesPerIP  int
	FirstMessageTimeout time.Duration
	// RecordClientsAfter is how long a new client identity must stay
	// connected, in one connection, to show life. It is checked whenever
	// the client sends something and when it disconnects. A new identity
	// is recorded (packets are stored for it while it is offline, and it
	// is kept across restarts) provisionally at its handshake while fewer
	// than MaxProvisionalClients provisional records exist; beyond that
	// only once it has shown life. Until recorded it is served while
	// connected and forgotten when it leaves, as one over
	// MaxStoredClients is. Showing life turns a provisional record into a
	// full one. Negative records every client at the handshake. Default
	// DefaultRecordClientsAfter.
	RecordClientsAfter time.Duration
	// MaxProvisionalClients bounds the clients recorded before they showed
	// life, so that throwaway identities hold at most this many of the
	// MaxStoredClients records, while a client that connects for a moment
	// still usually finds its messages stored when it returns. Negative
	// records nobody before they show life. Default
	// DefaultMaxProvisionalClients.
	MaxProvisionalClients int
	// MaxDownstreamBytes caps the bytes per second of a client's
	// constant-rate downstream (gatewire.Shape): a client that asks for
	// more is granted a longer interval between slots. The slots, cover
	// included, count against a client's tickets like any traffic.
	// Negative refuses shaping: every client gets the unshaped push.
	// Default DefaultMaxDownstreamBytes.
	MaxDownstreamBytes float64
	// DownstreamQueue bounds the messages waiting for a shaped client's
	// next slots; beyond it deliveries are stored and fed back as the
	// queue empties (for a client not yet recorded, which has no store,
	// they are dropped). Default DefaultDownstreamQueue.
	DownstreamQueue int
	// Now is the clock for stored packets' ages, clients' last-seen
	// times, connection ages and the rate limit; nil is time.Now.
	Now func() time.Time

	// Logger receives connection and storage events; nil is slog.Default().
	Logger *slog.Logger
	// Registerer, if set, receives the gateway's Prometheus metrics; Close
	// unregisters them.
	Registerer prometheus.Registerer
	// LinkStats, if set, receives the client links' counters, so the node
	// can share one set across its link servers.
	LinkStats *link.Stats

	// Tickets, when Tickets.Required, makes clients pay with anonymous
	// bandwidth tickets (see TicketConfig).
	Tickets TicketConfig

	// Trace, if set, records every frame on a client's link into an
	// anonymity trace, at the gateway end, named TraceSelf (see package
	// anonymity): for measurement only. TraceExit, if set, tells which
	// client is the exit's own IP router, named RoleExit there.
	Trace     *anonymity.Recorder
	TraceSelf anonymity.NodeID
	TraceExit func(addr [32]byte) bool
}

func (c Config) withDefaults() (Config, error) {
	if c.Static.Public == ([32]byte{}) {
		return c, errors.New("gateway: config has no static key")
	}
	if c.DataDir == "" {
		return c, errors.New("gateway: config has no data dir")
	}
	if c.Forward == nil {
		return c, errors.New("gateway: config has no Forward")
	}
	if c.MaxClients <= 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.MaxStoredBytes <= 0 {
		c.MaxStoredBytes = DefaultMaxStoredBytes
	}
	if c.MaxBadMessages <= 0 {
		c.MaxBadMessages = DefaultMaxBadMessages
	}
	if c.MessageTTL <= 0 {
		c.MessageTTL = DefaultMessageTTL
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = min(DefaultSweepInterval, max(c.MessageTTL/4, time.Millisecond))
	}
	if c.StoreQueueLen <= 0 {
		c.StoreQueueLen = DefaultStoreQueueLen
	}
	if c.ClientRetention <= 0 {
		c.ClientRetention = max(DefaultClientRetention, 7*c.MessageTTL)
	}
	if c.ClientRetention <= c.MessageTTL {
		return c, fmt.Errorf("gateway: ClientRetention %v must exceed MessageTTL %v", c.ClientRetention, c.MessageTTL)
	}
	if c.MaxStoredClients <= 0 {
		c.MaxStoredClients = DefaultMaxStoredClients
	}
	if c.MaxStoredBytesTotal <= 0 {
		c.MaxStoredBytesTotal = DefaultMaxStoredBytesTotal
	}
	if c.ClientRate <= 0 {
		c.ClientRate = DefaultClientRate
	}
	if c.ClientBurst <= 0 {
		c.ClientBurst = DefaultClientBurst
	}
	if c.SourceRate <= 0 {
		c.SourceRate = DefaultSourceRate
	}
	if c.SourceBurst <= 0 {
		c.SourceBurst = DefaultSourceBurst
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxClientsPerIP <= 0 {
		c.MaxClientsPerIP = DefaultMaxClientsPerIP
	}
	if c.RecordClientsAfter == 0 {
		c.RecordClientsAfter = DefaultRecordClientsAfter
	}
	switch {
	case c.MaxProvisionalClients == 0:
		c.MaxProvisionalClients = DefaultMaxProvisionalClients
	case c.MaxProvisionalClients < 0:
		c.MaxProvisionalClients = 0
	}
	if c.MaxDownstreamBytes == 0 {
		c.MaxDownstreamBytes = DefaultMaxDownstreamBytes
	}
	if c.DownstreamQueue <= 0 {
		c.DownstreamQueue = DefaultDownstreamQueue
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LinkStats == nil {
		c.LinkStats = new(link.Stats)
	}
	var err error
	if c.Tickets, err = c.Tickets.withDefaults(); err != nil {
		return c, err
	}
	return c, nil
}

// Gateway serves clients and delivers packets to them. Create it with New,
// run it with Serve, and Close it after Serve has returned.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	store   *store
	metrics *metrics
	// spent is the spent set of ticket serials; nil unless tickets are
	// required. askBelow is where a client is asked for its next ticket
	// (a quarter of a ticket's quota), reportKick wakes the report loop.
	spent      *spentSet
	askBelow   int64
	reportKick chan struct{}
	// unregisterMetrics takes the metrics off Config.Registerer at Close.
	unregisterMetrics func()
	now               func() time.Time

	drainWindow int
	drainStall  time.Duration

	// diskBytes is the size of every record in the database: written by
	// the writer goroutine only, so it needs no lock.
	diskBytes int64

	mu        sync.RWMutex
	clients   map[[sphinx.AddressSize]byte]*client
	connected int // clients with a connection; guarded by mu
	recorded  int // clients with a database record; guarded by mu
	// provisional counts recorded clients that have not shown life;
	// guarded by mu.
	provisional int
	seqFloor    uint64   // where a new client's numbering starts; guarded by mu
	sessions    sync.Map // *link.Conn → *session
	sources     *sources
	ops         chan *writeOp

	servicesMu sync.Mutex // serialises RegisterService
	services   atomic.Pointer[map[[sphinx.AddressSize]byte]func([sphinx.IDSize]byte, []byte)]

	serving  atomic.Bool
	served   bool // Serve ran once; guarded by serveMu
	serveMu  sync.Mutex
	serveCtx context.Context // set before any goroutine that reads it starts
	wg       sync.WaitGroup  // drainers and delayed closes
	closed   atomic.Bool
}

// New opens the database in cfg.DataDir and loads what it holds about
// clients. Nothing runs until Serve.
func New(cfg Config) (*Gateway, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := openStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "gateway"),
		store:       st,
		metrics:     newMetrics(),
		now:         cfg.Now,
		drainWindow: defaultDrainWindow,
		drainStall:  defaultDrainStall,
		clients:     make(map[[sphinx.AddressSize]byte]*client),
		sources:     newSources(cfg.SourceRate, cfg.SourceBurst),
		ops:         make(chan *writeOp, cfg.StoreQueueLen),
		serveCtx:    context.Background(),
		askBelow:    cfg.Tickets.Quota / 4,
		reportKick:  make(chan struct{}, 1),
	}
	g.services.Store(&map[[sphinx.AddressSize]byte]func([sphinx.IDSize]byte, []byte){})
	if g.seqFloor, err = st.seqFloor(); err != nil {
		// Clients the gateway knows keep their own numbering; only a
		// forgotten client that returns could see a Seq again, and no
		// client relies on that (see forgetIdle). Not worth refusing to
		// start over.
		g.log.Error("gateway sequence floor unreadable; starting from 0", "err", err)
		g.seqFloor = 0
	}
	loadedAt := cfg.Now().UnixNano()
	stored := 0
	err = st.load(func(sum storedSummary) {
		// Resume numbering above the reservation and above anything stored,
		// whichever is higher.
		next := max(sum.meta.Reserved, sum.highSeq+1, 1)
		if !sum.metaOK {
			// The reservation is lost: the floor is all that is left above
			// Seqs that went out and were confirmed and deleted.
			next = max(next, g.seqFloor)
		}
		// A version 1 or unreadable meta does not say when the client was
		// last seen: count from now, so an upgrade forgets nobody early.
		lastSeen := sum.meta.LastSeen
		if !sum.metaOK || lastSeen == 0 {
			lastSeen = loadedAt
		}
		g.clients[sum.addr] = &client{
			addr:        sum.addr,
			recorded:    true,
			provisional: sum.provisional,
			limit:       g.newLimiter(),
			nextSeq:     next,
			reserved:    next,
			storedCount: sum.count,
			storedBytes: sum.bytes,
			storedHigh:  sum.highSeq,
			dropped:     sum.meta.Dropped,
			lastSeen:    max(lastSeen, sum.newest),
		}
		g.clients[sum.addr].meter.metered = g.meters(sum.addr)
		stored += sum.count
		g.diskBytes += sum.bytes
		if sum.provisional {
			g.provisional++
		}
	})
	if err != nil {
		st.close()
		return nil, fmt.Errorf("gateway: load clients: %w", err)
	}
	if cfg.Tickets.Required {
		if g.spent, err = openSpent(cfg.DataDir); err != nil {
			st.close()
			return nil, err
		}
	}
	g.recorded = len(g.clients)
	g.metrics.clientsRecorded.Set(float64(g.recorded))
	g.metrics.storedBytes.Set(float64(g.diskBytes))
	g.metrics.clientsProvisional.Set(float64(g.provisional))
	if g.unregisterMetrics, err = promreg.Register(cfg.Registerer, g.metrics.collectors...); err != nil {
		st.close()
		g.closeSpent()
		return nil, fmt.Errorf("gateway: register metrics: %w", err)
	}
	g.log.Info("gateway store loaded", "clients", len(g.clients), "stored_messages", stored)
	return g, nil
}

// Serve accepts clients on ln until ctx ends or ln fails, and runs the
// database writer and the expiry sweep. It stops every goroutine it started,
// and commits every queued write, before it returns. It returns nil when
// stopped by ctx. A Gateway serves once.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	g.serveMu.Lock()
	if g.served || g.closed.Load() {
		g.serveMu.Unlock()
		ln.Close()
		return errors.New("gateway: Serve called twice or after Close")
	}
	g.served = true
	g.serving.Store(true)
	defer g.serving.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g.serveCtx = ctx
	g.serveMu.Unlock()

	srv, err := link.NewServer(link.ServerConfig{
		Config: link.Config{
			Static:  g.cfg.Static,
			Handler: g.handleFrame,
			OnClose: g.onClose,
			Logger:  g.log,
			Stats:   g.cfg.LinkStats,

			IdleTimeout: g.cfg.IdleTimeout,
		},
		OnConn:              g.onConn,
		MaxHandshakesPerIP:  g.cfg.MaxHandshakesPerIP,
		FirstMessageTimeout: g.cfg.FirstMessageTimeout,
		MaxConnsPerIP:       g.cfg.MaxClientsPerIP,
		// Room for handshakes in progress and refused clients being told
		// so, on top of the clients themselves.
		MaxConns: g.cfg.MaxClients + max(64, g.cfg.MaxClients/8),
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("gateway: %w", err)
	}

	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		g.runWriter(stopWriter)
	}()
	ticketsDone := make(chan struct{})
	go func() {
		defer close(ticketsDone)
		if g.cfg.Tickets.Required {
			g.runTickets(ctx)
		}
	}()

	g.log.Info("gateway serving clients", "listen", ln.Addr().String())
	err = srv.Serve(ctx, ln) // returns once every connection has ended
	cancel()
	<-ticketsDone
	g.wg.Wait()
	close(stopWriter)
	<-writerDone
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// Close writes what is still queued and each client's numbering, and closes
// the database. Deliver drops packets from then on. Call it after Serve has
// returned.
func (g *Gateway) Close() error {
	if g.serving.Load() {
		return errors.New("gateway: Close called while Serve is running")
	}
	g.serveMu.Lock()
	defer g.serveMu.Unlock()
	if !g.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Every enqueue happens under a client's lock after checking closed, so
	// once each lock has been taken nothing more can be queued.
	g.mu.RLock()
	all := make([]*client, 0, len(g.clients))
	for _, cl := range g.clients {
		cl.mu.Lock()
		cl.mu.Unlock()
		all = append(all, cl)
	}
	floor := g.seqFloor
	g.mu.RUnlock()
	g.flushOps()

	// Record exactly where each recorded client's numbering stands, so a
	// clean restart continues without a gap. Unrecorded clients stay out
	// of the database.
	batch := make([]*writeOp, 0, len(all))
	for _, cl := range all {
		cl.mu.Lock()
		recorded, provisional := cl.recorded, cl.provisional
		m := clientMeta{Reserved: cl.nextSeq, Dropped: cl.dropped, LastSeen: cl.lastSeen}
		cl.mu.Unlock()
		if !recorded {
			continue
		}
		batch = append(batch, &writeOp{kind: opMeta, provisional: provisional, client: cl, seq: m.Reserved, value: m.value()})
	}
	if len(batch) > 0 {
		g.commit(batch)
	}
	// Unrecorded clients forgotten at disconnect raised the floor in
	// memory only.
	if err := g.store.db.Update(func(tx *bolt.Tx) error { return putSeqFloor(tx, floor) }); err != nil {
		g.log.Error("gateway cannot record its sequence floor", "err", err)
	}
	g.unregisterMetrics()
	if err := g.closeSpent(); err != nil {
		return err
	}
	if err := g.store.close(); err != nil {
		return fmt.Errorf("gateway: close store: %w", err)
	}
	return nil
}
