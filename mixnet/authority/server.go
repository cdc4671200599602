package authority

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"
)

// DatabaseFile is the name of the directory's state database in its data dir.
const DatabaseFile = "directory.db"

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// DataDir holds the signing key and the state database. Required.
	DataDir string
	// EpochLength is the length of an epoch. Default 1h. It is fixed when a
	// data dir is first used.
	EpochLength time.Duration
	// RotationEpochs is how many epochs a Sphinx key rotation lasts.
	// Default 24. Fixed when a data dir is first used.
	RotationEpochs uint64
	// ProbeInterval is how often every node's health endpoint is probed.
	// Default EpochLength/6.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe. Default min(ProbeInterval, 5s).
	ProbeTimeout time.Duration
	// ProbeWindow is how many recent probes the performance score covers.
	// Default 24.
	ProbeWindow int
	// ProbeParallelism bounds concurrent probes. Default 32.
	ProbeParallelism int
	// MaxConsecutiveFailures is how many probes in a row a node may fail
	// before it loses its role at the next epoch. Default 2.
	MaxConsecutiveFailures int
	// MinPerformance is the lowest score that keeps a role. Default 0.5.
	MinPerformance float64
	// DescriptorTTL is how long a descriptor counts after it was received;
	// nodes must refresh before then. Default 2×EpochLength.
	DescriptorTTL time.Duration
	// MaxClockSkew is how far a descriptor's issued_at may be from the
	// directory's clock. Default 5 min.
	MaxClockSkew time.Duration
	// MaxNodes bounds how many identities the directory remembers.
	// Default 10000.
	MaxNodes int
	// Limits are the targets for role sizes; zero fields take DefaultLimits.
	Limits Limits
	// Monitor configures the test packets that measure seated nodes.
	Monitor Monitor
	// Admission holds the Sybil defences (admission mode, seat limits per
	// address and prefix, registration rate); zero fields take the
	// defaults of a public network, see Admission.
	Admission Admission
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the directory's logs. Default slog.Default().
	Logger *slog.Logger
	// ProbeClient makes the health probes. Default: a client that follows
	// no redirects and uses no proxy.
	ProbeClient *http.Client

	// Network, when set, makes this server one authority of a network of
	// them (the network file lists its key): it votes, computes the
	// consensus with the others and serves it with their signatures
	// (consensus.go, peers.go). Epochs count from Network.Genesis.
	Network *directory.Network
	// VoteWindow is how long before each epoch boundary the authorities
	// vote and sign the next epoch's consensus. Default EpochLength/4.
	VoteWindow time.Duration
	// PeerClient fetches the other authorities' votes and signatures.
	// Default http.DefaultClient (each attempt is bounded by VoteWindow/4,
	// at most 10 s).
	PeerClient *http.Client
	// Registerer receives the consensus metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Tickets configures the issuance and redemption of bandwidth tickets
	// (tickets.go); on unless Tickets.Disabled.
	Tickets Tickets
}

// minEpochLength keeps epochs long enough for at least a probe or two.
const minEpochLength = 50 * time.Millisecond

func (c Config) withDefaults() (Config, error) {
	if c.DataDir == "" {
		return c, errors.New("directory: no data dir")
	}
	if c.EpochLength == 0 {
		c.EpochLength = time.Hour
	}
	if c.EpochLength < minEpochLength {
		return c, fmt.Errorf("directory: epoch length %s is below the minimum %s", c.EpochLength, minEpochLength)
	}
	if c.RotationEpochs == 0 {
		c.RotationEpochs = 24
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = c.EpochLength / 6
	}
	if c.ProbeInterval < 0 {
		return c, fmt.Errorf("directory: negative probe interval %s", c.ProbeInterval)
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = min(c.ProbeInterval, 5*time.Second)
	}
	if c.ProbeWindow <= 0 {
		c.ProbeWindow = 24
	}
	if c.ProbeParallelism <= 0 {
		c.ProbeParallelism = 32
	}
	if c.MaxConsecutiveFailures <= 0 {
		c.MaxConsecutiveFailures = 2
	}
	if c.MinPerformance == 0 {
		c.MinPerformance = 0.5
	}
	if c.MinPerformance < 0 || c.MinPerformance > 1 {
		return c, fmt.Errorf("directory: min performance %v outside 0..1", c.MinPerformance)
	}
	if c.DescriptorTTL == 0 {
		c.DescriptorTTL = 2 * c.EpochLength
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = 5 * time.Minute
	}
	if c.MaxNodes <= 0 {
		c.MaxNodes = 10000
	}
	var err error
	if c.Limits, err = c.Limits.withDefaults(); err != nil {
		return c, fmt.Errorf("directory: %w", err)
	}
	if c.Admission, err = c.Admission.withDefaults(); err != nil {
		return c, fmt.Errorf("directory: %w", err)
	}
	if c.Monitor, err = c.Monitor.withDefaults(); err != nil {
		return c, fmt.Errorf("directory: %w", err)
	}
	if c.Tickets, err = c.Tickets.withDefaults(); err != nil {
		return c, fmt.Errorf("directory: %w", err)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ProbeClient == nil {
		c.ProbeClient = newProbeHTTPClient()
	}
	if c.VoteWindow == 0 {
		c.VoteWindow = c.EpochLength / 4
	}
	if c.VoteWindow < 0 || c.VoteWindow >= c.EpochLength {
		return c, fmt.Errorf("directory: vote window %s must be positive and shorter than the epoch %s", c.VoteWindow, c.EpochLength)
	}
	return c, nil
}

// forgetAfter is how long after its last refresh a node is deleted.
func (c Config) forgetAfter() time.Duration { return 10 * c.DescriptorTTL }

// Server is the directory authority: an http.Handler for the API and, in
// Run, the loops that probe nodes and turn epochs.
type Server struct {
	cfg   Config
	log   *slog.Logger
	priv  ed25519.PrivateKey
	pub   directory.Key
	store *store
	clock epochClock
	mux   *http.ServeMux
	adm   *admission

	// probeNow asks the probe loop to probe fresh registrations at once, so
	// a new node can take a role at the next boundary.
	probeNow chan directory.Key

	mu      sync.Mutex
	nodes   map[directory.Key]*nodeState
	current savedAssignment
	topo    *directory.Topology
	// signedJSON is the encoded SignedTopology served to everyone.
	signedJSON []byte

	// cons is the server's part in a network of authorities; nil without
	// Config.Network.
	cons *consensusState
	// tickets issues and redeems bandwidth tickets; nil when disabled.
	tickets *ticketState
}

// nodeState is what the directory knows about one registered node.
type nodeState struct {
	desc   directory.Descriptor
	rec    nodeRecord
	health probeHistory
	adm    admissionState
	loops  loopHistory // the monitor's test packets through the node
}

// NewServer opens (or initialises) the directory state in cfg.DataDir,
// loading or creating the signing key, and publishes the current epoch's
// topology. Call Run to make epochs turn and Close when done.
func NewServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	priv, created, err := LoadOrCreateSigningKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "directory")
	if created {
		log.Info("created directory signing key", "path", filepath.Join(cfg.DataDir, SigningKeyFile))
	}
	st, err := openStore(filepath.Join(cfg.DataDir, DatabaseFile))
	if err != nil {
		return nil, err
	}
	adm, err := newAdmission(cfg.Admission, cfg.DataDir)
	if err != nil {
		st.close()
		return nil, err
	}
	s := &Server{
		adm:      adm,
		cfg:      cfg,
		log:      log,
		priv:     priv,
		pub:      directory.Key(priv.Public().(ed25519.PublicKey)),
		store:    st,
		probeNow: make(chan directory.Key, 256),
		nodes:    make(map[directory.Key]*nodeState),
	}
	s.mux = http.NewServeMux()
	if !cfg.Tickets.Disabled {
		// Before load, which publishes the first topology with the keys.
		if err := s.initTickets(); err != nil {
			st.close()
			return nil, err
		}
	}
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	s.mux.HandleFunc("POST "+directory.PathNodes, s.handleRegister)
	s.mux.HandleFunc("GET "+directory.PathTopology, s.handleTopology)
	s.mux.HandleFunc("GET "+directory.PathIdentity, s.handleIdentity)
	s.mux.HandleFunc("GET "+directory.PathHealth, s.handleHealth)
	if cfg.Network != nil {
		if err := s.initConsensus(); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// load restores the epoch clock, nodes and assignment from the store and
// publishes the topology of the current epoch.
func (s *Server) load() error {
	clock, ok, err := s.store.loadClock()
	if err != nil {
		return err
	}
	if !ok {
		clock = epochClock{Genesis: s.genesis(), EpochLength: s.cfg.EpochLength, RotationEpochs: s.cfg.RotationEpochs}
		if err := s.store.saveClock(clock); err != nil {
			return err
		}
		s.log.Info("genesis", "time", clock.Genesis, "epoch_length", clock.EpochLength, "rotation_epochs", clock.RotationEpochs)
	} else if want := s.genesisFor(clock); clock.EpochLength != s.cfg.EpochLength || clock.RotationEpochs != s.cfg.RotationEpochs ||
		!clock.Genesis.Equal(want) {
		return fmt.Errorf("data dir %s was created with genesis %s, epoch length %s and %d epochs per rotation; this run asks for %s, %s and %d. "+
			"Changing them would renumber epochs under clients: use the original values or a new data dir",
			s.cfg.DataDir, clock.Genesis.Format(time.RFC3339Nano), clock.EpochLength, clock.RotationEpochs,
			want.Format(time.RFC3339Nano), s.cfg.EpochLength, s.cfg.RotationEpochs)
	}
	s.clock = clock

	skip := func(what string) func([]byte, error) {
		return func(id []byte, err error) {
			s.log.Warn("skipping damaged record", "kind", what, "id", fmt.Sprintf("%x", id), "err", err)
		}
	}
	err = forEach(s.store, bucketDescriptors, func(id directory.Key, rec nodeRecord) {
		d, err := rec.signed().Verify()
		if err != nil || d.Identity != id {
			s.log.Warn("skipping stored descriptor that no longer verifies", "id", id, "err", err)
			return
		}
		s.nodes[id] = &nodeState{desc: d, rec: rec}
	}, skip("descriptor"))
	if err != nil {
		return fmt.Errorf("load descriptors: %w", err)
	}
	err = forEach(s.store, bucketHealth, func(id directory.Key, h probeHistory) {
		if n, ok := s.nodes[id]; ok {
			n.health = h
		}
	}, skip("probe history"))
	if err != nil {
		return fmt.Errorf("load probe history: %w", err)
	}
	if err := s.loadAdmission(skip("admission")); err != nil {
		return err
	}
	saved, ok, err := s.store.loadAssignment()
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	epoch := s.clock.epochAt(now)
	if ok {
		s.current = saved
	}
	if ok && saved.Epoch == epoch {
		// Same epoch as before the restart: publish exactly the same roles.
		s.log.Info("resuming epoch", "epoch", epoch, "nodes", len(s.nodes))
		return s.publishLocked(now)
	}
	if ok && saved.Epoch < epoch {
		return s.graceLocked(saved, epoch, now)
	}
	return s.assignLocked(epoch, now)
}

// Close releases the state database. Call it after Run has returned.
func (s *Server) Close() error {
	if s.cons != nil {
		s.cons.unregister()
	}
	if s.tickets != nil {
		s.tickets.unregister()
	}
	return s.store.close()
}

// PublicKey returns the directory's ed25519 public key, the one clients pin.
func (s *Server) PublicKey() ed25519.PublicKey { return s.pub.Ed25519() }

// Topology returns the topology currently published. The caller must not
// modify it.
func (s *Server) Topology() *directory.Topology {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.topo
}

// ServeHTTP serves the directory API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Run turns epochs and probes nodes until ctx is done. It returns nil on a
// clean shutdown. It owns every goroutine it starts and waits for them.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.probeLoop(ctx) })
	wg.Go(func() { s.monitorLoop(ctx) })
	if s.cons != nil {
		wg.Go(func() { s.consensusLoop(ctx) })
	}
	if s.tickets != nil {
		wg.Go(func() { s.ticketLoop(ctx) })
	}
	s.epochLoop(ctx)
	wg.Wait()
	// The probe client's idle connections hold two goroutines each until
	// the nodes close them; the directory is done with them.
	s.cfg.ProbeClient.CloseIdleConnections()
	return nil
}

// epochLoop wakes at each epoch boundary and assigns the new epoch's roles.
func (s *Server) epochLoop(ctx context.Context) {
	for {
		now := s.cfg.Now()
		next := s.clock.start(s.clock.epochAt(now) + 1)
		timer := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		// Timers may fire a hair early by the wall clock; advance then does
		// nothing and the loop waits the remainder.
		s.advance(s.cfg.Now())
	}
}

// advance moves to the epoch containing now, if that is a new one.
func (s *Server) advance(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	epoch := s.clock.epochAt(now)
	if epoch <= s.current.Epoch && s.topo != nil {
		return
	}
	if err := s.assignLocked(epoch, now); err != nil {
		s.log.Error("epoch transition failed; still serving the previous topology", "epoch", epoch, "err", err)
	}
}

// probeLoop probes every fresh node each ProbeInterval, and new
// registrations as they come.
func (s *Server) probeLoop(ctx context.Context) {
	ticker := time.NewTicker(s.cfg.ProbeInterval)
	defer ticker.Stop()
	s.probeRound(ctx, nil)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			s.probeRound(ctx, nil)
		case id := <-s.probeNow:
			only := map[directory.Key]bool{id: true}
			for drained := false; !drained; {
				select {
				case id := <-s.probeNow:
					only[id] = true
				default:
					drained = true
				}
			}
			s.probeRound(ctx, only)
		}
	}
}

// probeRound probes the nodes with fresh descriptors (only those in only,
// when it is not nil) and records the outcomes.
func (s *Server) probeRound(ctx context.Context, only map[directory.Key]bool) {
	s.adm.approvals.refresh(s.log)
	s.mu.Lock()
	now := s.cfg.Now()
	var targets []probeTarget
	for id, n := range s.nodes {
		if (only == nil || only[id]) && now.Sub(n.rec.ReceivedAt) <= s.cfg.DescriptorTTL {
			targets = append(targets, s.probeTargetLocked(id, n))
		}
	}
	s.mu.Unlock()
	if len(targets) == 0 {
		return
	}
	results := probeAll(ctx, targets, s.cfg.ProbeParallelism, func(ctx context.Context, t probeTarget) error {
		return s.adm.check(ctx, s.cfg.ProbeClient, t, s.cfg.ProbeTimeout)
	})
	if ctx.Err() != nil {
		return
	}
	s.recordProbes(results, s.cfg.Now())
}

// recordProbes stores probe outcomes. While the published topology cannot
// route (some role is empty, as in a network that is just starting), it also
// re-assigns the current epoch at once rather than leaving the network
// unusable until the next boundary.
func (s *Server) recordProbes(results map[directory.Key]error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordAdmissionLocked(results, now)
	changed := make(map[directory.Key]probeHistory, len(results))
	for id, err := range results {
		n, ok := s.nodes[id]
		if !ok {
			continue
		}
		wasFailing := n.health.ConsecutiveFailures > 0
		n.health.record(err, now, s.cfg.ProbeWindow)
		changed[id] = n.health
		switch {
		case err != nil && !wasFailing:
			s.log.Warn("node failed health probe", "node", id, "err", err)
		case err == nil && wasFailing:
			s.log.Info("node answers health probes again", "node", id)
		}
	}
	if err := s.store.saveHealth(changed); err != nil {
		s.log.Error("saving probe results", "err", err)
	}
	s.fillIncompleteLocked(now)
}

// fillIncompleteLocked re-assigns the current epoch at once while the
// published topology cannot route (some role is empty), so that a node that
// becomes eligible mid-epoch (it passed its probes, or announced the
// rotation's Sphinx key late) fills the gap now rather than at the next
// boundary: until then the network is unusable for every client.
func (s *Server) fillIncompleteLocked(now time.Time) {
	if s.topo == nil || s.topo.Routable() == nil {
		return
	}
	epoch := max(s.clock.epochAt(now), s.current.Epoch)
	if err := s.assignLocked(epoch, now); err != nil {
		s.log.Error("re-assigning incomplete topology", "err", err)
	}
}

// eligibleLocked lists the nodes that may take a role in epoch, and why the
// others may not.
func (s *Server) eligibleLocked(epoch uint64, now time.Time) (eligible []candidate, excluded map[directory.Key]string) {
	rotation := epoch / s.clock.RotationEpochs
	excluded = make(map[directory.Key]string)
	for id, n := range s.nodes {
		why := s.admissionBlockLocked(id, n)
		switch {
		case why != "":
		case now.Sub(n.rec.ReceivedAt) > s.cfg.DescriptorTTL:
			why = fmt.Sprintf("descriptor not refreshed since %s", n.rec.ReceivedAt.Format(time.RFC3339))
		case len(n.health.Results) == 0:
			why = "not probed yet"
		case n.health.ConsecutiveFailures >= s.cfg.MaxConsecutiveFailures:
			why = fmt.Sprintf("failed its last %d health probes: %s", n.health.ConsecutiveFailures, n.health.LastError)
		case s.loopBlockLocked(n, now) != "":
			why = s.loopBlockLocked(n, now)
		case n.health.score() < s.cfg.MinPerformance:
			why = fmt.Sprintf("performance %.2f below %.2f", n.health.score(), s.cfg.MinPerformance)
		default:
			if _, ok := n.desc.SphinxKeyFor(rotation); !ok {
				why = fmt.Sprintf("no sphinx key for rotation %d", rotation)
			}
		}
		if why != "" {
			excluded[id] = why
			continue
		}
		eligible = append(eligible, candidate{id: id, caps: n.desc.Capabilities, score: min(n.health.score(), n.loops.score())})
	}
	return s.seatLimitLocked(eligible, excluded), excluded
}

// assignLocked assigns the roles of epoch, stores them and publishes the
// topology. It also forgets nodes that have been silent for long.
func (s *Server) assignLocked(epoch uint64, now time.Time) error {
	s.forgetLocked(now)
	eligible, excluded := s.eligibleLocked(epoch, now)
	prev := s.current
	next := assignRoles(prev.Assignment, eligible, s.cfg.Limits, epoch)
	if s.topo != nil && prev.Epoch == epoch && prev.Assignment.equal(&next) {
		return nil // nothing changed: keep the published document as it is
	}
	for g, ids := range prev.Assignment.groups() {
		for _, id := range ids {
			if why, ok := excluded[id]; ok {
				s.log.Info("node loses its role", "node", id, "role", groupRole(g), "epoch", epoch, "reason", why)
			}
		}
	}
	s.current = savedAssignment{Epoch: epoch, Assignment: next}
	if err := s.store.saveAssignment(s.current); err != nil {
		// Keep serving: a restart would re-assign from the nodes' state.
		s.log.Error("saving assignment", "err", err)
	}
	if err := s.publishLocked(now); err != nil {
		return err
	}
	t := s.topo
	s.log.Info("epoch roles", "epoch", epoch, "rotation", t.Rotation,
		"entry", len(t.Entry), "exit", len(t.Exit),
		"layer1", len(t.Layers[0]), "layer2", len(t.Layers[1]), "layer3", len(t.Layers[2]),
		"standby", len(t.Standby), "excluded", len(excluded))
	if err := t.Routable(); err != nil {
		s.log.Warn("topology is not routable", "err", err)
	}
	return nil
}

// forgetLocked deletes nodes that have not refreshed for forgetAfter and
// hold no role.
func (s *Server) forgetLocked(now time.Time) {
	assigned := make(map[directory.Key]bool)
	for _, ids := range s.current.Assignment.groups() {
		for _, id := range ids {
			assigned[id] = true
		}
	}
	var gone []directory.Key
	for id, n := range s.nodes {
		if !assigned[id] && now.Sub(n.rec.ReceivedAt) > s.cfg.forgetAfter() {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return
	}
	if err := s.store.deleteNodes(gone); err != nil {
		s.log.Error("forgetting silent nodes", "err", err)
		return
	}
	for _, id := range gone {
		delete(s.nodes, id)
		s.log.Info("forgot silent node", "node", id)
	}
}

// publishLocked builds, signs and publishes the topology of the current
// assignment from the nodes' latest descriptors.
func (s *Server) publishLocked(now time.Time) error {
	epoch := s.current.Epoch
	t := &directory.Topology{
		Epoch:          epoch,
		EpochStart:     s.clock.start(epoch),
		EpochEnd:       s.clock.start(epoch + 1),
		EpochLength:    s.clock.EpochLength,
		Rotation:       epoch / s.clock.RotationEpochs,
		RotationEpochs: s.clock.RotationEpochs,
		IssuedAt:       now.UTC().Round(0),
	}
	a := &s.current.Assignment
	t.Entry = s.nodesLocked(a.Entry, directory.RoleEntry, t.Rotation)
	t.Exit = s.nodesLocked(a.Exit, directory.RoleExit, t.Rotation)
	for l := range a.Layers {
		t.Layers[l] = s.nodesLocked(a.Layers[l], directory.RoleMix, t.Rotation)
	}
	t.Standby = s.nodesLocked(a.Standby, directory.RoleStandby, t.Rotation)
	t.Issuers = s.issuerKeysAt(t.EpochStart)
	t.Monitors = s.monitorKeys()
	signed, err := directory.SignTopology(s.priv, t)
	if err != nil {
		return fmt.Errorf("publish epoch %d: %w", epoch, err)
	}
	body, err := jsonMarshal(signed)
	if err != nil {
		return fmt.Errorf("publish epoch %d: %w", epoch, err)
	}
	s.topo, s.signedJSON = t, body
	return nil
}

// nodesLocked turns identities into topology entries. It leaves out a node
// whose current descriptor can no longer play role (it withdrew the
// capability or its Sphinx key mid-epoch), so a published topology always
// verifies.
func (s *Server) nodesLocked(ids []directory.Key, role directory.Role, rotation uint64) []directory.Node {
	out := make([]directory.Node, 0, len(ids))
	for _, id := range ids {
		n, ok := s.nodes[id]
		if !ok {
			continue
		}
		node := n.topologyNode()
		if node.Validate(role, rotation) != nil {
			continue
		}
		out = append(out, node)
	}
	return out
}

// topologyNode is the node's entry in the topology.
// Its performance is the lower of the probes' and the test packets' scores.
func (n *nodeState) topologyNode() directory.Node {
	return n.desc.Node(min(n.health.score(), n.loops.score()))
}
