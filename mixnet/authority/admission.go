package authority

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
)

// Admission modes.
const (
	// AdmissionOpen seats any node that proves its keys and address, within
	// the per-address and per-prefix limits. For the local network and
	// tests; a public network without stake runs AdmissionApproval.
	AdmissionOpen = "open"
	// AdmissionApproval seats only nodes an operator approved with
	// `nym-api nodes approve`.
	AdmissionApproval = "approval"
)

// Admission decides who may take a seat: the Sybil defences of an
// authority that has no stake to weigh nodes by. Zero fields take the
// defaults of a public network.
type Admission struct {
	// Mode is AdmissionOpen (default) or AdmissionApproval.
	Mode string
	// MaxSeatsPerAddress bounds the nodes of one IP address that may hold a
	// role or standby in an epoch. Default 2: one operator may run a mix
	// and a gateway on one host, and a host that runs more adds no
	// independence to a route, only more of the same operator. Negative is
	// unlimited.
	MaxSeatsPerAddress int
	// MaxSeatsPerPrefix bounds the same per IPv4 /24 or IPv6 /48, the
	// unit one operator typically rents. Default 4 (Tor's authorities use
	// the same idea); the local network puts every node in one /24 and sets
	// it negative (unlimited).
	MaxSeatsPerPrefix int
	// RegisterRate is how many registrations of identities the authority
	// does not know yet one source (an IPv4 address or IPv6 /64) may make
	// per second, refilled continuously. Refreshes of known identities are
	// not limited. Default 0.1 (one new node per 10 s per source).
	RegisterRate float64
	// RegisterBurst is the token bucket's size: how many new identities a
	// source may register at once (a host starting its nodes). Default 32.
	RegisterBurst int
	// MaxPending bounds the registrations held that have not yet passed
	// their Noise handshake: a flood of fake registrations fills only
	// these, never the room of admitted nodes, and each one leaves at its
	// first failed handshake. Default 256.
	MaxPending int
	// MaxSources bounds the sources whose token buckets are remembered.
	// Default 4096.
	MaxSources int
}

func (a Admission) withDefaults() (Admission, error) {
	switch a.Mode {
	case "":
		a.Mode = AdmissionOpen
	case AdmissionOpen, AdmissionApproval:
	default:
		return a, fmt.Errorf("admission mode %q: want %q or %q", a.Mode, AdmissionOpen, AdmissionApproval)
	}
	if a.MaxSeatsPerAddress == 0 {
		a.MaxSeatsPerAddress = 2
	}
	if a.MaxSeatsPerPrefix == 0 {
		a.MaxSeatsPerPrefix = 4
	}
	if a.RegisterRate == 0 {
		a.RegisterRate = 0.1
	}
	if a.RegisterRate < 0 {
		return a, fmt.Errorf("admission: negative register rate %v", a.RegisterRate)
	}
	if a.RegisterBurst <= 0 {
		a.RegisterBurst = 32
	}
	if a.MaxPending <= 0 {
		a.MaxPending = 256
	}
	if a.MaxSources <= 0 {
		a.MaxSources = 4096
	}
	return a, nil
}

// admissionState is what the authority has verified of one node.
type admissionState struct {
	// proven is set when the authority completed a Noise handshake with the
	// node's announced key at its announced mixnet address; reset when the
	// node announces another key or address.
	proven bool
	// ip is the address the proving handshake reached: health probes go
	// there and nowhere else, and seat limits count it.
	ip netip.Addr
	// firstProven orders nodes for the seat limits: the earlier holder
	// keeps its seat.
	firstProven time.Time
}

// admission holds the state the defences share between the handler, the
// probe goroutines and the epoch loop.
type admission struct {
	cfg Admission
	// key is the authority's link key for proving handshakes. It is made
	// fresh at start: nodes authorise links by topology, not by this key.
	key link.KeyPair

	mu      sync.Mutex
	sources map[netip.Prefix]*rate.Limiter
	// reached holds the address each successful proving handshake of the
	// current probe round reached, until recordProbes takes it.
	reached map[directory.Key]netip.Addr

	approvals *approvals
}

func newAdmission(cfg Admission, dataDir string) (*admission, error) {
	key, err := link.GenerateKeyPair(nil)
	if err != nil {
		return nil, fmt.Errorf("admission link key: %w", err)
	}
	return &admission{
		cfg:       cfg,
		key:       key,
		sources:   make(map[netip.Prefix]*rate.Limiter),
		reached:   make(map[directory.Key]netip.Addr),
		approvals: newApprovals(dataDir),
	}, nil
}

// allowNew takes a token from the bucket of the source of r, for the
// registration of an identity the authority does not know.
func (a *admission) allowNew(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	src := link.SourceOf(net.TCPAddrFromAddrPort(ap))
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.sources[src]
	if !ok {
		if len(a.sources) >= a.cfg.MaxSources {
			a.pruneSourcesLocked()
		}
		l = rate.NewLimiter(rate.Limit(a.cfg.RegisterRate), a.cfg.RegisterBurst)
		a.sources[src] = l
	}
	return l.Allow()
}

// pruneSourcesLocked forgets buckets that have refilled (they hold no
// memory worth keeping); if none has, an arbitrary one, so the map stays
// bounded whatever the number of sources.
func (a *admission) pruneSourcesLocked() {
	for src, l := range a.sources {
		if l.Tokens() >= float64(a.cfg.RegisterBurst) {
			delete(a.sources, src)
		}
	}
	for src := range a.sources {
		if len(a.sources) < a.cfg.MaxSources {
			break
		}
		delete(a.sources, src)
	}
}

// checkRegistrationLocked is the admission check of a registration, before
// it is stored: hosts that match, keys and addresses no proven node holds,
// and room among the pending registrations. It returns the HTTP status
// and an error saying what conflicts.
func (s *Server) checkRegistrationLocked(d *directory.Descriptor, known bool, now time.Time) (int, error) {
	if err := sameHost(d); err != nil {
		return http.StatusBadRequest, err
	}
	if s.adm.approvals.rejected(d.Identity) {
		return http.StatusForbidden, fmt.Errorf("node %s was rejected by the authority's operator", d.Identity)
	}
	// First come keeps: a pending registration holds its keys too, until
	// its first failed handshake drops it or it goes stale.
	for id, n := range s.nodes {
		if id == d.Identity || !n.adm.proven && now.Sub(n.rec.ReceivedAt) > s.cfg.DescriptorTTL {
			continue
		}
		if what := conflict(d, &n.desc); what != "" {
			return http.StatusConflict, fmt.Errorf("%s is already announced by node %s, registered first; every node needs its own keys and addresses", what, id)
		}
	}
	if !known && s.pendingLocked() >= s.adm.cfg.MaxPending {
		return http.StatusServiceUnavailable, fmt.Errorf("%d registrations await their admission check; try again later", s.adm.cfg.MaxPending)
	}
	return 0, nil
}

func (s *Server) pendingLocked() int {
	n := 0
	for _, st := range s.nodes {
		if !st.adm.proven {
			n++
		}
	}
	return n
}

// sameHost requires a node's HTTP and clients addresses on the host of its
// mixnet address: the authority proves the mixnet address by a handshake
// and talks HTTP only to the host it reached, so a node cannot borrow
// someone else's health endpoint or point clients at a third party.
func sameHost(d *directory.Descriptor) error {
	host, _, err := net.SplitHostPort(d.MixnetAddr)
	if err != nil {
		return fmt.Errorf("mixnet address %q: %w", d.MixnetAddr, err)
	}
	for what, addr := range map[string]string{"http address": d.HTTPAddr, "clients address": d.ClientsAddr} {
		if addr == "" {
			continue
		}
		h, _, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("%s %q: %w", what, addr, err)
		}
		if !strings.EqualFold(h, host) {
			return fmt.Errorf("%s %q is not on the mixnet address's host %q: announce every listener on one host", what, addr, host)
		}
	}
	return nil
}

// conflict names the first key or address d shares with other, "" if none.
func conflict(d, other *directory.Descriptor) string {
	switch {
	case d.NoiseKey == other.NoiseKey:
		return "noise key " + d.NoiseKey.String()
	case d.MixnetAddr == other.MixnetAddr:
		return "mixnet address " + d.MixnetAddr
	case d.HTTPAddr == other.HTTPAddr:
		return "http address " + d.HTTPAddr
	case d.ClientsAddr != "" && d.ClientsAddr == other.ClientsAddr:
		return "clients address " + d.ClientsAddr
	}
	for _, k := range d.SphinxKeys {
		for _, o := range other.SphinxKeys {
			if k.Key == o.Key {
				return "sphinx key " + k.Key.String()
			}
		}
	}
	for _, k := range d.KEMKeys {
		for _, o := range other.KEMKeys {
			if bytes.Equal(k.Key, o.Key) {
				return fmt.Sprintf("KEM key of rotation %d", k.Rotation)
			}
		}
	}
	return ""
}

// noteDescriptorLocked resets the proof of a node that announces another
// Noise key, KEM key or mixnet address than the one it proved.
func (s *Server) noteDescriptorLocked(n *nodeState, d *directory.Descriptor) {
	old := &n.desc
	if !n.adm.proven {
		return
	}
	if old.NoiseKey != d.NoiseKey || old.MixnetAddr != d.MixnetAddr || !slices.EqualFunc(old.KEMKeys, d.KEMKeys, func(a, b directory.RotationKEMKey) bool {
		return a.Rotation == b.Rotation && bytes.Equal(a.Key, b.Key)
	}) {
		n.adm.proven = false
		s.saveProofLocked(d.Identity, n.adm)
		s.log.Info("node announced new link keys or mixnet address: it proves them again before it keeps a seat", "node", d.Identity)
	}
}

// errHandshake marks a probe that failed at the proving handshake.
var errHandshake = errors.New("mixnet handshake failed")

// check is one probe of a node: a Noise handshake to its announced mixnet
// address with its announced key (hybrid when it announces a KEM key for
// the rotation), which proves it holds the key and answers there; then, and
// only then, its health endpoint at the address that handshake reached.
func (a *admission) check(ctx context.Context, client *http.Client, t probeTarget, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := link.Config{Static: a.key, HandshakeTimeout: timeout, ConnectTimeout: timeout, Logger: discardLogger}
	if len(t.kem) > 0 {
		if pk, err := link.ParseKEMPublicKey(t.kem); err == nil {
			cfg.PeerKEM = func([32]byte) *link.KEMPublicKey { return pk }
		}
	}
	conn, err := link.Dial(ctx, t.mixnetAddr, [32]byte(t.noiseKey), cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", errHandshake, err)
	}
	reached := conn.RemoteAddr()
	conn.Close()
	ap, err := netip.ParseAddrPort(reached.String())
	if err != nil {
		return fmt.Errorf("%w: reached %s: %w", errHandshake, reached, err)
	}
	ip := ap.Addr().Unmap()
	a.mu.Lock()
	a.reached[t.id] = ip
	a.mu.Unlock()
	_, port, err := net.SplitHostPort(t.addr)
	if err != nil {
		return fmt.Errorf("http address %q: %w", t.addr, err)
	}
	return probe(ctx, client, net.JoinHostPort(ip.String(), port), timeout)
}

// recordAdmissionLocked turns a probe round's handshakes into proofs. A
// node that never proved itself and fails its handshake is forgotten, so
// fake registrations free their pending slot at once; so is one whose
// proof conflicts with a node proven before it (two registrations racing
// for one key or address).
func (s *Server) recordAdmissionLocked(results map[directory.Key]error, now time.Time) {
	s.adm.mu.Lock()
	reached := s.adm.reached
	s.adm.reached = make(map[directory.Key]netip.Addr)
	s.adm.mu.Unlock()
	var gone []directory.Key
	for id, err := range results {
		n, ok := s.nodes[id]
		if !ok {
			continue
		}
		ip, shook := reached[id]
		if !shook {
			if !n.adm.proven && errors.Is(err, errHandshake) {
				s.log.Info("dropping registration that failed its mixnet handshake", "node", id, "err", err)
				gone = append(gone, id)
			}
			continue
		}
		if n.adm.proven {
			if n.adm.ip != ip {
				n.adm.ip = ip
				s.saveProofLocked(id, n.adm)
			}
			continue
		}
		if other, what := s.provenConflictLocked(id, n); what != "" {
			s.log.Warn("dropping registration: conflicts with an admitted node", "node", id, "conflict", what, "holder", other)
			gone = append(gone, id)
			continue
		}
		n.adm = admissionState{proven: true, ip: ip, firstProven: now}
		s.saveProofLocked(id, n.adm)
		s.log.Info("node proved its noise key and address", "node", id, "ip", ip)
	}
	if len(gone) == 0 {
		return
	}
	if err := s.store.deleteNodes(gone); err != nil {
		s.log.Error("dropping unproven registrations", "err", err)
		return
	}
	for _, id := range gone {
		delete(s.nodes, id)
		delete(results, id)
	}
}

func (s *Server) provenConflictLocked(id directory.Key, n *nodeState) (directory.Key, string) {
	for oid, o := range s.nodes {
		if oid == id || !o.adm.proven {
			continue
		}
		if what := conflict(&n.desc, &o.desc); what != "" {
			return oid, what
		}
	}
	return directory.Key{}, ""
}

// admissionBlockLocked says why a node may not take a seat for admission
// reasons, "" if it may.
func (s *Server) admissionBlockLocked(id directory.Key, n *nodeState) string {
	switch {
	case !n.adm.proven:
		return "has not completed a mixnet handshake with its announced noise key"
	case s.adm.approvals.rejected(id):
		return "rejected by the operator"
	case s.adm.cfg.Mode == AdmissionApproval && !s.adm.approvals.approved(id):
		return "awaits approval (nym-api nodes approve " + id.String() + ")"
	}
	return ""
}

// seatLimitLocked keeps at most MaxSeatsPerAddress candidates per IP
// address and MaxSeatsPerPrefix per /24 (/48), preferring nodes that hold a
// role now, then the earliest proven; the rest are excluded with the
// reason.
func (s *Server) seatLimitLocked(eligible []candidate, excluded map[directory.Key]string) []candidate {
	held := make(map[directory.Key]bool)
	for _, ids := range s.current.Assignment.groups() {
		for _, id := range ids {
			held[id] = true
		}
	}
	slices.SortFunc(eligible, func(a, b candidate) int {
		if held[a.id] != held[b.id] {
			if held[a.id] {
				return -1
			}
			return 1
		}
		if c := s.nodes[a.id].adm.firstProven.Compare(s.nodes[b.id].adm.firstProven); c != 0 {
			return c
		}
		return bytes.Compare(a.id[:], b.id[:])
	})
	perAddr := make(map[netip.Addr]int)
	perPrefix := make(map[netip.Prefix]int)
	kept := eligible[:0]
	for _, c := range eligible {
		ip := s.nodes[c.id].adm.ip
		prefix := seatPrefix(ip)
		switch {
		case s.adm.cfg.MaxSeatsPerAddress > 0 && perAddr[ip] >= s.adm.cfg.MaxSeatsPerAddress:
			excluded[c.id] = fmt.Sprintf("%d nodes at %s already take part (limit %d per address)", perAddr[ip], ip, s.adm.cfg.MaxSeatsPerAddress)
		case s.adm.cfg.MaxSeatsPerPrefix > 0 && perPrefix[prefix] >= s.adm.cfg.MaxSeatsPerPrefix:
			excluded[c.id] = fmt.Sprintf("%d nodes in %s already take part (limit %d per prefix)", perPrefix[prefix], prefix, s.adm.cfg.MaxSeatsPerPrefix)
		default:
			perAddr[ip]++
			perPrefix[prefix]++
			kept = append(kept, c)
		}
	}
	return kept
}

// seatPrefix is the /24 of an IPv4 address or the /48 of an IPv6 one.
func seatPrefix(ip netip.Addr) netip.Prefix {
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p
}

// allowRegistration rate-limits registrations of identities the authority
// does not hold yet, per source; refreshes always pass.
func (s *Server) allowRegistration(r *http.Request, id directory.Key) bool {
	s.mu.Lock()
	_, known := s.nodes[id]
	s.mu.Unlock()
	return known || s.adm.allowNew(r)
}

// admissionWarningsLocked tells a registering node what keeps it from a
// seat for admission reasons.
func (s *Server) admissionWarningsLocked(id directory.Key) []string {
	n, ok := s.nodes[id]
	if !ok {
		return nil
	}
	if why := s.admissionBlockLocked(id, n); why != "" && n.adm.proven {
		return []string{"no seat: " + why}
	}
	return nil
}

// probeTargetLocked is what a probe of n checks.
func (s *Server) probeTargetLocked(id directory.Key, n *nodeState) probeTarget {
	t := probeTarget{id: id, addr: n.desc.HTTPAddr, mixnetAddr: n.desc.MixnetAddr, noiseKey: n.desc.NoiseKey}
	if k, ok := n.desc.KEMKeyFor(s.current.Epoch / s.clock.RotationEpochs); ok {
		t.kem = k
	}
	return t
}

// admissionRecord is a node's admissionState as stored, so a restarted
// authority does not forget which nodes proved themselves.
type admissionRecord struct {
	IP          netip.Addr `json:"ip"`
	FirstProven time.Time  `json:"first_proven"`
}

// loadAdmission restores the proofs of the loaded nodes.
func (s *Server) loadAdmission(skip func([]byte, error)) error {
	err := forEach(s.store, bucketAdmission, func(id directory.Key, r admissionRecord) {
		if n, ok := s.nodes[id]; ok {
			n.adm = admissionState{proven: true, ip: r.IP, firstProven: r.FirstProven}
		}
	}, skip)
	if err != nil {
		return fmt.Errorf("load admission: %w", err)
	}
	return nil
}

// saveProofLocked stores or clears the proof of node id.
func (s *Server) saveProofLocked(id directory.Key, st admissionState) {
	var err error
	if st.proven {
		err = s.store.putJSON(bucketAdmission, id[:], admissionRecord{IP: st.ip, FirstProven: st.firstProven})
	} else {
		err = s.store.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketAdmission).Delete(id[:]) })
	}
	if err != nil {
		s.log.Error("saving admission state", "node", id, "err", err)
	}
}

var discardLogger = slog.New(slog.DiscardHandler)
