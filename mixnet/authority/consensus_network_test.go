package authority

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/prometheus/client_golang/prometheus"
)

// waitRoutableEpoch waits until authority i serves a routable consensus
// with all of want's signatures and returns its epoch.
func (tn *testNet) waitRoutableEpoch(i int, signers int) uint64 {
	t := tn.t
	t.Helper()
	var epoch uint64
	waitFor(t, "a routable consensus", 30*netEpoch, func() bool {
		e := tn.epochNow()
		sc, ok := tn.consensusOf(i, e)
		if !ok || len(tn.signers(sc)) < signers || decode(t, sc).Routable() != nil {
			return false
		}
		epoch = e
		return true
	})
	return epoch
}

// TestThreeAuthoritiesServeIdenticalConsensus: 3 authorities, k = 2, with
// the same nodes: each epoch all three serve byte-identical documents
// signed by all three, and a network client accepts them. It logs how long
// after each epoch boundary (negative: before it) the consensus had k
// signatures.
func TestThreeAuthoritiesServeIdenticalConsensus(t *testing.T) {
	tn := newTestNet(t, 3, 2)
	for i := range 3 {
		tn.start(i)
	}
	nodes := network(t)
	tn.register(nodes...)
	first := tn.waitRoutableEpoch(0, 3)

	client := directory.NewNetworkClient(tn.net, &http.Client{Timeout: 5 * time.Second})
	for e := first + 1; e <= first+3; e++ {
		// Watch the vote window of epoch e from its opening, and note when
		// some authority's document first has k signatures.
		sleepUntil(context.Background(), time.Now, tn.epochStart(e).Add(-netWindow))
		var kAt time.Time
		waitFor(t, "k signatures", 10*netEpoch, func() bool {
			for i := range 3 {
				if sc, ok := tn.consensusOf(i, e); ok && len(tn.signers(sc)) >= tn.net.Threshold {
					kAt = time.Now()
					return true
				}
			}
			return false
		})
		t.Logf("epoch %d: consensus with k=%d signatures %s after the epoch boundary (vote window %s)",
			e, tn.net.Threshold, kAt.Sub(tn.epochStart(e)).Round(time.Millisecond), netWindow)

		// Usually all three sign; on a busy machine one may miss a vote,
		// make another document and adopt the others' instead.
		var docs []directory.SignedConsensus
		waitFor(t, "all three to serve a document with k signatures", 10*netEpoch, func() bool {
			var ok bool
			docs, ok = tn.signedDocs(e, 3, tn.net.Threshold)
			return ok
		})
		t.Logf("epoch %d: signers %v %v %v", e, tn.signers(docs[0]), tn.signers(docs[1]), tn.signers(docs[2]))
		if !sameDoc(docs[0], docs[1]) || !sameDoc(docs[0], docs[2]) {
			t.Fatalf("epoch %d: the authorities serve different documents:\n%s\n%s\n%s", e, docs[0].Topology, docs[1].Topology, docs[2].Topology)
		}
		top, err := docs[0].Verify(tn.net)
		if err != nil || top.Epoch != e || top.Routable() != nil {
			t.Fatalf("epoch %d document: %v (epoch %d)", e, err, top.Epoch)
		}
		for _, n := range nodes {
			if r, _ := top.RoleOf(n.id()); r == directory.RoleNone {
				t.Errorf("epoch %d: node %s left out", e, n.id())
			}
		}
	}
	got, err := client.Topology(context.Background())
	if err != nil || got.Routable() != nil {
		t.Fatalf("network client: %v", err)
	}
	// Health reports the consensus.
	var health directory.HealthResponse
	resp, err := http.Get(tn.net.Authorities[2].URL + directory.PathHealth)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if health.Routable != "" || health.Epoch < got.Epoch {
		t.Fatalf("health of a network authority: %+v", health)
	}
	// A registering node hears its role in the consensus.
	a := tn.net.Authorities[1]
	dc := &directory.Client{BaseURL: a.URL, Key: a.Key.Ed25519()}
	reg, err := dc.RegisterWithStatus(context.Background(), nodes[0].signed(t, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := got.RoleOf(nodes[0].id()); reg.Role != want || want == directory.RoleNone {
		t.Fatalf("registration says role %s, the consensus %s", reg.Role, want)
	}
	for _, a := range tn.auths {
		m := gatherCounters(t, a.reg)
		// Four epochs at least, two peers each; signatures in most of them.
		if m["nym_api_votes_received_total"] < 2*4 || m["nym_api_consensus_signatures_collected_total"] < 4 {
			t.Errorf("%s metrics: %v", a.name, m)
		}
		if _, ok := m["nym_api_consensus_failures_total"]; !ok {
			t.Errorf("%s: no failures counter: %v", a.name, m)
		}
	}
}

// TestLyingAuthorityOutvoted: auth3 votes for a node only it knows and signs
// a document of its own that puts that node in every layer and drops honest
// nodes. Its document never gathers a second signature and no client
// accepts it; the consensus of the other two is what it would be without
// the lie.
func TestLyingAuthorityOutvoted(t *testing.T) {
	tn := newTestNet(t, 3, 2)
	nodes := network(t)
	// One node the liar controls for each of the five routed groups.
	var sybils []*testNode
	var sybilVotes []directory.VoteNode
	for range 5 {
		n := newTestNode(t, autoNode)
		sybils = append(sybils, n)
		sybilVotes = append(sybilVotes, directory.VoteNode{Descriptor: n.signed(t, time.Now()), Performance: 1})
	}
	liar := tn.auths[2]
	liar.tamperVote = func(v *directory.Vote, descs []directory.Descriptor) []directory.Descriptor {
		v.Nodes = append(v.Nodes, sybilVotes...)
		for _, n := range sybils {
			descs = append(descs, n.desc)
		}
		return descs
	}
	lies := make(chan *directory.Topology, 64)
	liar.tamperDoc = func(top *directory.Topology) {
		node := func(i int) []directory.Node { return []directory.Node{sybils[i].desc.Node(1)} }
		top.Entry, top.Exit = node(0), node(1)
		for l := range top.Layers {
			top.Layers[l] = node(2 + l)
		}
		top.Standby = nil
		select {
		case lies <- top:
		default:
		}
	}
	for i := range 3 {
		tn.start(i)
	}
	tn.register(nodes...)
	first := tn.waitRoutableEpoch(0, 2)

	// Each epoch, whatever document any authority serves with k signatures
	// is the honest one. (On a busy machine an honest authority may miss a
	// vote and sign another document: that epoch then has no consensus,
	// which is a failure, not a lie. Two epochs must succeed.)
	successes := 0
	for e := first + 1; e <= first+8 && successes < 2; e++ {
		var honest []directory.SignedConsensus
		agreed := pollUntil(tn.epochStart(e+1), func() bool {
			var ok bool
			honest, ok = tn.signedDocs(e, 2, 2)
			return ok
		})
		for i := range 3 {
			sc, ok := tn.consensusOf(i, e)
			if !ok {
				continue
			}
			top, err := sc.Verify(tn.net)
			if err != nil {
				continue
			}
			for _, n := range sybils {
				if r, _ := top.RoleOf(n.id()); r != directory.RoleNone {
					t.Fatalf("epoch %d: a node only the liar voted for is in a consensus with k signatures (%v) as %s", e, tn.signers(sc), r)
				}
			}
			for _, n := range nodes {
				if r, _ := top.RoleOf(n.id()); r == directory.RoleNone {
					t.Fatalf("epoch %d: honest node %s left out of a consensus with k signatures", e, n.id())
				}
			}
		}
		if !agreed {
			t.Logf("epoch %d: the honest authorities did not agree in time", e)
			continue
		}
		if !sameDoc(honest[0], honest[1]) {
			t.Fatalf("epoch %d: honest authorities serve different documents with k signatures", e)
		}
		if s := tn.signers(honest[0]); slices.Contains(s, "auth3") {
			t.Fatalf("epoch %d: the liar's signature is on the honest document: %v", e, s)
		}
		successes++
	}
	if successes < 2 {
		t.Fatalf("only %d epochs of 8 made a consensus", successes)
	}

	// The liar's own document: its signature only; with every signature the
	// honest authorities gave out it still falls short.
	var lie *directory.Topology
	select {
	case lie = <-lies:
	default:
		t.Fatal("the liar never signed a document")
	}
	doc, err := directory.EncodeConsensus(tn.net, lie)
	if err != nil {
		t.Fatal(err)
	}
	forged := directory.SignedConsensus{Topology: doc, Signatures: []directory.ConsensusSignature{directory.SignConsensus(liar.priv, doc)}}
	for i := range 2 {
		sc, _ := tn.consensusOf(i, tn.epochNow())
		forged.Signatures = append(forged.Signatures, sc.Signatures...)
	}
	_, err = forged.Verify(tn.net)
	if !errors.Is(err, directory.ErrTooFewSignatures) {
		t.Fatalf("the liar's document with every signature around: %v", err)
	}
	t.Logf("the liar's document: %v", err)
	// Clients, whichever authority they ask first, get the honest one.
	client := directory.NewNetworkClient(tn.net, &http.Client{Timeout: 5 * time.Second})
	for range 10 {
		top, err := client.Topology(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := top.RoleOf(sybils[0].id()); r != directory.RoleNone {
			t.Fatal("a client accepted a consensus with the liar's node")
		}
	}
	if line, ok := tn.auths[0].logs.find("an authority signed another consensus document", "peer=auth3"); !ok {
		t.Error("auth1 did not log the liar's other document")
	} else {
		t.Logf("auth1: %s", strings.TrimSpace(line))
	}
}

// TestVoteForAnotherEpochRefused: auth3 is replaced by an impostor that
// serves, under auth3's real key, a vote for another epoch than asked. The
// others refuse it with a clear log line and keep making the consensus
// with two votes.
func TestVoteForAnotherEpochRefused(t *testing.T) {
	tn := newTestNet(t, 3, 2)
	fake := tn.auths[2]
	handler := http.NewServeMux()
	handler.HandleFunc("GET "+directory.PathVotes, func(w http.ResponseWriter, r *http.Request) {
		v := &directory.Vote{Epoch: 999999, IssuedAt: time.Now().UTC(), Nodes: []directory.VoteNode{},
			Params: directory.VoteParams{EpochStart: time.Now().UTC(), EpochLength: netEpoch, RotationEpochs: 1000, MaxEntries: 50, MaxExits: 50, LayerSize: 100}}
		sv, err := directory.SignVote(fake.priv, v)
		if err != nil {
			t.Error(err)
			return
		}
		writeJSON(w, http.StatusOK, sv)
	})
	var h http.Handler = handler
	fake.alt.Store(&h)
	tn.start(0)
	tn.start(1)
	tn.registerWith(tn.net.Authorities[:2], network(t)...) // the impostor takes no registration
	epoch := tn.waitRoutableEpoch(0, 2)
	line, ok := tn.auths[0].logs.find("refused a vote", "peer=auth3", "wrong epoch", "the vote is for epoch 999999")
	if !ok {
		t.Fatal("no log line refusing the impostor's vote")
	}
	t.Logf("epoch %d routable; auth1 said: %s", epoch, strings.TrimSpace(line))
}

// gatherCounters reads every counter of reg by name.
func gatherCounters(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if c := m.GetCounter(); c != nil {
				out[f.GetName()] += c.GetValue()
			}
		}
	}
	return out
}

// TestSingleAuthorityNetworkClient: a network client given the old URL and
// key pair (SingleAuthority, n = 1, k = 1) reads a single directory's
// signed topology, and a network of one authority serves a consensus
// signed by one that the same kind of client accepts.
func TestSingleAuthorityNetworkClient(t *testing.T) {
	// A directory without a network file.
	legacy, err := NewServer(Config{DataDir: t.TempDir(), EpochLength: netEpoch, ProbeInterval: 100 * time.Millisecond, Logger: testLogger(t), RotationEpochs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer legacy.Close()
	ts := httptest.NewServer(legacy)
	defer ts.Close()
	key, _ := directory.KeyFromEd25519(legacy.PublicKey())
	c := directory.NewNetworkClient(directory.SingleAuthority(ts.URL, key), &http.Client{Timeout: 5 * time.Second})
	if top, err := c.Topology(context.Background()); err != nil || top.DirectoryKey != key {
		t.Fatalf("single directory through a network client: %v", err)
	}

	// A network of one.
	tn := newTestNet(t, 1, 1)
	tn.start(0)
	tn.register(network(t)...)
	tn.waitRoutableEpoch(0, 1)
	one := directory.NewNetworkClient(tn.net, &http.Client{Timeout: 5 * time.Second})
	top, err := one.Topology(context.Background())
	if err != nil || top.DirectoryKey != tn.net.ID() {
		t.Fatalf("network of one: %v", err)
	}
	// The old URL and key pair reads it too.
	a := tn.net.Authorities[0]
	old := &directory.Client{BaseURL: a.URL, Key: a.Key.Ed25519(), HTTP: &http.Client{Timeout: 5 * time.Second}}
	if top, err := old.Topology(context.Background()); err != nil || top.DirectoryKey != tn.net.ID() {
		t.Fatalf("URL and key client of a network of one: %v", err)
	}
}

// TestPartitionedAuthoritiesAgree: auth1 and auth2 cannot reach each other.
// Each gets the other's vote relayed by auth3 and its signature with auth3's
// document, so all three still serve the same consensus.
func TestPartitionedAuthoritiesAgree(t *testing.T) {
	tn := newTestNet(t, 3, 2)
	tn.cut = map[int][]int{0: {1}, 1: {0}}
	for i := range 3 {
		tn.start(i)
	}
	nodes := network(t)
	tn.register(nodes...)
	first := tn.waitRoutableEpoch(2, 2)
	// On a busy machine an authority may miss a vote window and the epoch
	// have no consensus, or collect its last signature after the window:
	// both are the protocol's timing, not a partition's. So the test waits
	// for two agreed epochs, and for each partitioned authority to have
	// once served the other's signature, however many epochs that takes.
	successes := 0
	travelled := map[int]bool{}
	for e := first + 1; e <= first+20 && (successes < 2 || len(travelled) < 2); e++ {
		var docs []directory.SignedConsensus
		if !pollUntil(tn.epochStart(e+1), func() bool {
			var ok bool
			docs, ok = tn.signedDocs(e, 3, 2)
			return ok
		}) {
			t.Logf("epoch %d: no agreement in time", e)
			continue
		}
		if !sameDoc(docs[0], docs[1]) || !sameDoc(docs[1], docs[2]) {
			t.Fatalf("epoch %d: partitioned authorities serve different documents", e)
		}
		successes++
		// Signatures travel too: auth1 gets auth2's from auth3's document.
		pollUntil(tn.epochStart(e+1), func() bool {
			for i := range 2 {
				if sc, ok := tn.consensusOf(i, e); ok && slices.Contains(tn.signers(sc), tn.auths[1-i].name) {
					travelled[i] = true
				}
			}
			return len(travelled) == 2
		})
		for i := range 3 {
			docs[i], _ = tn.consensusOf(i, e)
		}
		t.Logf("epoch %d: signers %v %v %v", e, tn.signers(docs[0]), tn.signers(docs[1]), tn.signers(docs[2]))
	}
	if successes < 2 {
		t.Fatalf("only %d epochs agreed", successes)
	}
	for i := range 2 {
		if !travelled[i] {
			t.Errorf("%s never served %s's signature: it did not travel through auth3", tn.auths[i].name, tn.auths[1-i].name)
		}
	}
	if _, ok := tn.auths[0].logs.find("vote relayed", "peer=auth2", "via=auth3"); !ok {
		t.Error("auth1 never got auth2's vote through auth3")
	}
}
