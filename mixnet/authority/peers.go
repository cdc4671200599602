package authority

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nym-go/nym/internal/promreg"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/prometheus/client_golang/prometheus"
)

// keyConsensus is where the newest accepted consensus is kept, so a
// restarted authority starts from it.
var keyConsensus = []byte("consensus")

// keepEpochs is how many epochs of votes and documents an authority keeps
// serving: enough for a peer that is a little behind.
const keepEpochs = 4

// consensusState is an authority's part in a network of authorities.
type consensusState struct {
	net    *directory.Network
	self   directory.Authority
	client *directory.Client
	window time.Duration
	poll   time.Duration

	votesReceived prometheus.Counter
	sigsCollected prometheus.Counter
	failures      prometheus.Counter
	unregister    func()

	// Tests make a lying authority with these; nil otherwise.
	tamperVote func(*directory.Vote, []directory.Descriptor) []directory.Descriptor
	tamperDoc  func(*directory.Topology)

	mu    sync.Mutex
	votes map[uint64]map[directory.Key]verifiedVote
	// docs are this authority's documents of each epoch with the signatures
	// gathered; a document adopted from peers replaces its own.
	docs     map[uint64]*directory.SignedConsensus
	accepted *acceptedConsensus
}

// initConsensus sets up the authority's part in cfg.Network and its routes.
func (s *Server) initConsensus() error {
	net := s.cfg.Network
	if err := net.Validate(); err != nil {
		return fmt.Errorf("network file: %w", err)
	}
	self, ok := net.Authority(s.pub)
	if !ok {
		return fmt.Errorf("network file does not list this authority's key %s: add it, or run with the data dir whose key it lists", s.pub)
	}
	cs := &consensusState{
		net: net, self: self, window: s.cfg.VoteWindow,
		poll: min(max(s.cfg.VoteWindow/20, 5*time.Millisecond), time.Second),
		votesReceived: prometheus.NewCounter(prometheus.CounterOpts{Name: "nym_api_votes_received_total",
			Help: "Votes of other authorities received and verified."}),
		sigsCollected: prometheus.NewCounter(prometheus.CounterOpts{Name: "nym_api_consensus_signatures_collected_total",
			Help: "Other authorities' signatures collected on this authority's consensus documents."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "nym_api_consensus_failures_total",
			Help: "Epochs for which this authority got no consensus with the threshold of signatures."}),
		votes: make(map[uint64]map[directory.Key]verifiedVote),
		docs:  make(map[uint64]*directory.SignedConsensus),
	}
	cs.client = directory.NewNetworkClient(net, s.cfg.PeerClient)
	cs.client.AuthorityTimeout = min(max(s.cfg.VoteWindow/4, 50*time.Millisecond), 10*time.Second)
	var err error
	if cs.unregister, err = promreg.Register(s.cfg.Registerer, cs.votesReceived, cs.sigsCollected, cs.failures); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	var sc directory.SignedConsensus
	if found, err := s.store.getJSON(bucketMeta, keyConsensus, &sc); err != nil || !found {
		if err != nil {
			s.log.Warn("ignoring the stored consensus", "err", err)
		}
	} else if t, err := sc.Verify(net); err != nil {
		s.log.Warn("ignoring the stored consensus: it does not verify under the network file", "err", err)
	} else {
		cs.accepted = &acceptedConsensus{sc: sc, top: t, assign: assignmentOf(t)}
		cs.docs[t.Epoch] = &sc
		s.log.Info("loaded the last consensus", "epoch", t.Epoch, "signatures", len(sc.Signatures))
	}
	s.cons = cs
	s.mux.HandleFunc("GET "+directory.PathVotes, s.handleVotes)
	s.mux.HandleFunc("GET "+directory.PathConsensus, s.handleConsensus)
	s.log.Info("authority of a network", "name", self.Name, "authorities", len(net.Authorities), "threshold", net.Threshold, "vote_window", cs.window)
	return nil
}

// consensusLoop makes the consensus of every epoch until ctx is done: at
// once for the current epoch when it has none (a start, a restart), then in
// the vote window before each boundary.
func (s *Server) consensusLoop(ctx context.Context) {
	cs := s.cons
	for ctx.Err() == nil {
		now := s.cfg.Now()
		cur := s.clock.epochAt(now)
		next := cur + 1
		voteAt := s.clock.start(next).Add(-cs.window)
		switch {
		case !cs.hasDoc(cur) && now.Before(voteAt):
			s.consensusRound(ctx, cur, true)
			if !cs.hasDoc(cur) {
				sleepUntil(ctx, s.cfg.Now, earliest(s.cfg.Now().Add(cs.window/2), voteAt))
			}
		case !cs.hasDoc(next):
			if sleepUntil(ctx, s.cfg.Now, voteAt) {
				s.consensusRound(ctx, next, false)
			}
			if !cs.hasDoc(next) {
				sleepUntil(ctx, s.cfg.Now, s.clock.start(next))
			}
		default:
			sleepUntil(ctx, s.cfg.Now, s.clock.start(next))
		}
	}
}

// consensusRound makes the consensus of epoch. late is a round for an epoch
// already under way: a peer's consensus with the threshold of signatures is
// adopted at once, and failing that a restarted network re-issues the last
// consensus for a grace epoch.
func (s *Server) consensusRound(ctx context.Context, epoch uint64, late bool) {
	cs := s.cons
	start := s.cfg.Now()
	log := s.log.With("epoch", epoch)
	cs.prune(epoch)
	s.catchUpPrev(ctx, epoch)
	if late && s.adoptFromPeers(ctx, epoch) {
		return
	}
	voteDeadline := s.clock.start(epoch).Add(-cs.window / 2)
	collectDeadline := s.clock.start(epoch + 1).Add(-cs.window)
	if late {
		voteDeadline = start.Add(cs.window / 2)
		collectDeadline = latest(collectDeadline, start.Add(cs.window))
	}

	sv, v, descs, err := s.makeVote(epoch)
	if err != nil {
		log.Error("making the vote", "err", err)
		return
	}
	cs.mu.Lock()
	cs.addVoteLocked(epoch, cs.self.Key, verifiedVote{signed: sv, vote: v, descs: descs})
	cs.mu.Unlock()
	log.Info("voted", "nodes", len(v.Nodes))

	s.collectVotes(ctx, epoch, voteDeadline)
	if ctx.Err() != nil {
		return
	}
	in := consensusInput{net: cs.net, epoch: epoch, params: s.paramsFor(epoch)}
	cs.mu.Lock()
	for _, a := range cs.net.Authorities {
		if vv, ok := cs.votes[epoch][a.Key]; ok {
			in.votes = append(in.votes, vv)
		}
	}
	if cs.accepted != nil && cs.accepted.top.Epoch < epoch {
		in.prev = cs.accepted
	}
	cs.mu.Unlock()

	var top *directory.Topology
	switch {
	case len(in.votes) >= cs.net.Majority():
		if top, _, err = computeConsensus(in); err != nil {
			log.Error("computing the consensus", "err", err)
			return
		}
		if late && in.prev != nil && top.Routable() != nil {
			// A network coming back from an outage: the nodes have not
			// re-registered yet, so the votes are thin. Everyone keeps the
			// last consensus's seat for a grace epoch instead.
			if grace := graceConsensus(in.prev, epoch, in.params); grace.Routable() == nil {
				log.Warn("the votes make no routable consensus; re-issuing the last consensus's roles for a grace epoch",
					"votes", len(in.votes), "last_epoch", in.prev.top.Epoch, "why", top.Routable())
				top = grace
			}
		}
	case late && in.prev != nil:
		log.Warn("too few votes for a consensus; re-issuing the last consensus's roles for a grace epoch",
			"votes", len(in.votes), "majority", cs.net.Majority(), "last_epoch", in.prev.top.Epoch)
		top = graceConsensus(in.prev, epoch, in.params)
	default:
		cs.failures.Inc()
		log.Warn("consensus failed: too few votes", "votes", len(in.votes), "majority", cs.net.Majority())
		s.adoptFromPeers(ctx, epoch)
		return
	}
	if cs.tamperDoc != nil {
		cs.tamperDoc(top)
	}
	doc, err := directory.EncodeConsensus(cs.net, top)
	if err != nil {
		log.Error("encoding the consensus", "err", err)
		return
	}
	sc := &directory.SignedConsensus{Topology: doc, Signatures: []directory.ConsensusSignature{directory.SignConsensus(s.priv, doc)}}
	cs.mu.Lock()
	cs.docs[epoch] = sc
	cs.mu.Unlock()
	log.Info("signed the consensus", "votes", len(in.votes), "entry", len(top.Entry), "exit", len(top.Exit),
		"layer1", len(top.Layers[0]), "layer2", len(top.Layers[1]), "layer3", len(top.Layers[2]), "standby", len(top.Standby))

	if s.collectSignatures(ctx, epoch, sc, collectDeadline) {
		log.Info("consensus has the threshold of signatures", "after", s.cfg.Now().Sub(start).Round(time.Millisecond))
		return
	}
	if ctx.Err() == nil && !s.adoptFromPeers(ctx, epoch) {
		cs.failures.Inc()
		cs.mu.Lock()
		n := len(sc.Signatures)
		cs.mu.Unlock()
		log.Warn("consensus failed: too few signatures on this authority's document, and no peer has one with enough",
			"signatures", n, "threshold", cs.net.Threshold)
	}
}

// collectVotes fetches the other authorities' votes for epoch until it has
// them all or deadline passes.
func (s *Server) collectVotes(ctx context.Context, epoch uint64, deadline time.Time) {
	cs := s.cons
	refused := make(map[directory.Key]string)
	for {
		cs.mu.Lock()
		var missing []directory.Authority
		for _, a := range cs.net.Authorities {
			if _, ok := cs.votes[epoch][a.Key]; !ok {
				missing = append(missing, a)
			}
		}
		cs.mu.Unlock()
		if len(missing) == 0 {
			return
		}
		for _, a := range missing {
			vv, err := s.fetchVote(ctx, a, epoch)
			if err != nil {
				// A vote that is there but wrong is worth a warning, once per
				// reason; an authority that has not voted yet, or is down,
				// is normal (and shows in the consensus's vote count).
				if refusedVote(err) && refused[a.Key] != err.Error() {
					refused[a.Key] = err.Error()
					s.log.Warn("refused a vote", "peer", a.Name, "epoch", epoch, "err", err)
				} else if !refusedVote(err) {
					s.log.Debug("no vote yet", "peer", a.Name, "epoch", epoch, "err", err)
				}
				continue
			}
			cs.mu.Lock()
			cs.addVoteLocked(epoch, a.Key, vv)
			cs.mu.Unlock()
			cs.votesReceived.Inc()
			s.log.Debug("vote received", "peer", a.Name, "epoch", epoch, "nodes", len(vv.vote.Nodes))
		}
		if len(missing) > 0 && !sleepUntil(ctx, s.cfg.Now, earliest(s.cfg.Now().Add(cs.poll), deadline)) {
			return
		}
		if !s.cfg.Now().Before(deadline) {
			return
		}
	}
}

// fetchVote fetches authority a's vote for epoch from a, or when a does not
// answer from any other peer that received it, and checks its params. A refused
// vote from a itself is final: a peer cannot vouch for another vote.
func (s *Server) fetchVote(ctx context.Context, a directory.Authority, epoch uint64) (verifiedVote, error) {
	cs := s.cons
	v, descs, sv, err := cs.client.FetchVote(ctx, a, epoch)
	var answered *directory.StatusError
	if err != nil && !refusedVote(err) && !errors.As(err, &answered) {
		// a did not answer (it answered "not yet" otherwise): ask the others.
		for _, via := range cs.net.Authorities {
			if via.Key == a.Key || via.Key == cs.self.Key {
				continue
			}
			if v, descs, sv, err = cs.client.FetchVoteVia(ctx, via, a, epoch); err == nil {
				s.log.Debug("vote relayed", "peer", a.Name, "via", via.Name, "epoch", epoch)
				break
			}
		}
	}
	if err != nil {
		return verifiedVote{}, err
	}
	if !sameParams(v.Params, s.paramsFor(epoch)) {
		return verifiedVote{}, fmt.Errorf("%w: its params %+v differ from this authority's %+v: the authorities of a network must share epoch length, rotation and role limits",
			errParams, v.Params, s.paramsFor(epoch))
	}
	return verifiedVote{signed: sv, vote: v, descs: descs}, nil
}

// refusedVote tells a vote that was served but is not acceptable from one
// that could not be fetched.
func refusedVote(err error) bool {
	for _, e := range []error{directory.ErrWrongEpoch, directory.ErrInvalid, directory.ErrBadSignature, directory.ErrUntrustedDirectory, errParams} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// errParams means a vote was made with other consensus params.
var errParams = errors.New("params differ")

// collectSignatures fetches the other authorities' documents of epoch and
// adds each valid signature over this authority's own bytes to sc, until
// every authority signed or deadline passes. It reports whether sc reached
// the threshold; from then it is the accepted consensus. A peer's other
// document that has the threshold already is adopted instead.
func (s *Server) collectSignatures(ctx context.Context, epoch uint64, sc *directory.SignedConsensus, deadline time.Time) bool {
	cs := s.cons
	reported := make(map[directory.Key]bool)
	for {
		cs.mu.Lock()
		have := make(map[directory.Key]bool)
		for _, sig := range sc.Signatures {
			have[sig.Key] = true
		}
		enough := len(have) >= cs.net.Threshold
		cs.mu.Unlock()
		if enough {
			s.accept(epoch, sc)
		}
		if len(have) == len(cs.net.Authorities) {
			return true
		}
		if !s.cfg.Now().Before(deadline) || ctx.Err() != nil {
			return enough
		}
		for _, a := range cs.net.Authorities {
			// Peers that signed already are asked again too: they pass
			// on the signatures of authorities this one cannot reach.
			if a.Key == cs.self.Key {
				continue
			}
			theirs, err := cs.client.FetchSignedConsensus(ctx, a, epoch)
			if err != nil {
				continue
			}
			if !bytes.Equal(theirs.Topology, sc.Topology) {
				if t, err := theirs.Verify(cs.net); err == nil && t.Epoch == epoch {
					// The others agreed on another document (this authority
					// missed a vote, say): that is the consensus.
					s.log.Info("adopted the consensus of a peer", "epoch", epoch, "from", a.Name, "signatures", len(theirs.Signatures))
					cs.mu.Lock()
					cs.docs[epoch] = &theirs
					cs.mu.Unlock()
					s.accept(epoch, &theirs)
					return true
				}
				if !reported[a.Key] {
					reported[a.Key] = true
					s.log.Warn("an authority signed another consensus document", "peer", a.Name, "epoch", epoch)
				}
				continue
			}
			cs.mu.Lock()
			for _, sig := range theirs.Signatures {
				if sc.AddSignature(cs.net, sig) {
					cs.sigsCollected.Inc()
				}
			}
			cs.mu.Unlock()
		}
		sleepUntil(ctx, s.cfg.Now, earliest(s.cfg.Now().Add(cs.poll), deadline))
	}
}

// adoptFromPeers takes a consensus of epoch with the threshold of
// signatures from any peer, for an authority that is behind or whose own
// document did not gather enough. It reports whether it found one.
func (s *Server) adoptFromPeers(ctx context.Context, epoch uint64) bool {
	cs := s.cons
	for _, i := range rand.Perm(len(cs.net.Authorities)) {
		a := cs.net.Authorities[i]
		if a.Key == cs.self.Key {
			continue
		}
		sc, t, err := cs.client.FetchConsensus(ctx, a, epoch)
		if err != nil {
			// A refusal names why (k − 1 signatures, a stranger's key,
			// another epoch); "not found" is an authority that is behind.
			s.log.Debug("no consensus to adopt", "peer", a.Name, "epoch", epoch, "err", err)
			continue
		}
		s.log.Info("adopted the consensus of a peer", "epoch", t.Epoch, "from", a.Name, "signatures", len(sc.Signatures))
		cs.mu.Lock()
		cs.docs[epoch] = &sc
		cs.mu.Unlock()
		s.accept(epoch, &sc)
		return true
	}
	return false
}

// catchUpPrev makes sure the previous epoch's consensus is known before
// epoch's is computed from it: an authority that missed it (it was down)
// fetches it from a peer, so it seeds the same tie-breaks as the others.
func (s *Server) catchUpPrev(ctx context.Context, epoch uint64) {
	if epoch == 0 {
		return
	}
	cs := s.cons
	cs.mu.Lock()
	behind := cs.accepted == nil || cs.accepted.top.Epoch+1 < epoch
	cs.mu.Unlock()
	if behind {
		s.adoptFromPeers(ctx, epoch-1)
	}
}

// accept makes sc (with the threshold of signatures) the newest accepted
// consensus if it is newer, and stores it.
func (s *Server) accept(epoch uint64, sc *directory.SignedConsensus) {
	cs := s.cons
	cs.mu.Lock()
	if cs.accepted != nil && cs.accepted.top.Epoch > epoch {
		cs.mu.Unlock()
		return
	}
	snapshot := directory.SignedConsensus{Topology: sc.Topology, Signatures: slices.Clone(sc.Signatures)}
	cs.mu.Unlock()
	t, err := snapshot.Verify(cs.net)
	if err != nil {
		s.log.Error("a consensus thought complete does not verify", "epoch", epoch, "err", err)
		return
	}
	cs.mu.Lock()
	cs.accepted = &acceptedConsensus{sc: snapshot, top: t, assign: assignmentOf(t)}
	cs.mu.Unlock()
	if err := s.store.putJSON(bucketMeta, keyConsensus, snapshot); err != nil {
		s.log.Error("storing the consensus", "err", err)
	}
}

// prune forgets the votes and documents of epochs long before epoch.
func (cs *consensusState) prune(epoch uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	pruneBefore(cs.votes, epoch)
	pruneBefore(cs.docs, epoch)
}

func pruneBefore[V any](m map[uint64]V, epoch uint64) {
	for e := range m {
		if e+keepEpochs < epoch {
			delete(m, e)
		}
	}
}

// addVoteLocked records a verified vote.
func (cs *consensusState) addVoteLocked(epoch uint64, from directory.Key, vv verifiedVote) {
	if cs.votes[epoch] == nil {
		cs.votes[epoch] = make(map[directory.Key]verifiedVote)
	}
	cs.votes[epoch][from] = vv
}

// roleOf is a node's role in the newest accepted consensus.
func (cs *consensusState) roleOf(id directory.Key) (directory.Role, int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.accepted == nil {
		return directory.RoleNone, 0
	}
	return cs.accepted.top.RoleOf(id)
}

// health says which epoch's consensus is served and, when it cannot route
// or has too few signatures, why.
func (cs *consensusState) health(cur uint64) (uint64, string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	doc := cs.servedLocked(cur)
	if doc == nil {
		return cur, fmt.Sprintf("no consensus of epoch %d yet", cur)
	}
	t, err := doc.Verify(cs.net)
	if err != nil {
		return cur, err.Error()
	}
	if err := t.Routable(); err != nil {
		return t.Epoch, err.Error()
	}
	return t.Epoch, ""
}

func (cs *consensusState) hasDoc(epoch uint64) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.docs[epoch] != nil
}

// servedLocked is the document served as the current consensus: the
// current epoch's once it has the threshold of signatures, else the newest
// accepted one (clients take the previous epoch's for a while), else
// whatever this authority has of the current epoch.
func (cs *consensusState) servedLocked(cur uint64) *directory.SignedConsensus {
	doc := cs.docs[cur]
	if doc != nil && len(doc.Signatures) >= cs.net.Threshold {
		return doc
	}
	if cs.accepted != nil && cs.accepted.top.Epoch <= cur {
		return &cs.accepted.sc
	}
	return doc
}

// handleConsensus serves GET /api/v1/consensus[?epoch=N] and, for a network,
// GET /api/v1/topology: the document with every signature gathered.
func (s *Server) handleConsensus(w http.ResponseWriter, r *http.Request) {
	cs := s.cons
	var (
		epoch uint64
		err   error
	)
	q := r.URL.Query().Get("epoch")
	if q != "" {
		if epoch, err = strconv.ParseUint(q, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("want ?epoch=N: %v", err))
			return
		}
	}
	cs.mu.Lock()
	var doc *directory.SignedConsensus
	if q != "" {
		doc = cs.docs[epoch]
	} else {
		epoch = s.clock.epochAt(s.cfg.Now())
		doc = cs.servedLocked(epoch)
	}
	var body []byte
	if doc != nil {
		body, err = jsonMarshal(doc)
	}
	cs.mu.Unlock()
	if doc == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("no consensus of epoch %d here yet", epoch))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, errors.New("encoding the consensus failed"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(body)
}

// sleepUntil waits until now() reaches t or ctx is done, and reports
// whether it reached t.
func sleepUntil(ctx context.Context, now func() time.Time, t time.Time) bool {
	d := t.Sub(now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
