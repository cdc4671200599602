package authority

import (
	"bytes"
	"crypto/ed25519"
	crand "crypto/rand"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// voteOf builds a verified vote listing nodes, each with performance perf.
func voteOf(t *testing.T, epoch uint64, nodes []*testNode, perf float64) verifiedVote {
	t.Helper()
	v := &directory.Vote{Epoch: epoch}
	var descs []directory.Descriptor
	for _, n := range nodes {
		v.Nodes = append(v.Nodes, directory.VoteNode{Descriptor: n.signed(t, n.desc.IssuedAt), Performance: perf})
		descs = append(descs, n.desc)
	}
	return verifiedVote{vote: v, descs: descs}
}

func threeAuthorityNetwork(t *testing.T) *directory.Network {
	t.Helper()
	net := &directory.Network{Threshold: 2}
	for i := range 3 {
		pub, _, err := ed25519.GenerateKey(crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		net.Authorities = append(net.Authorities, directory.Authority{Name: string(rune('a' + i)), Key: directory.Key(pub), URL: "http://192.0.2.1:" + string(rune('1'+i))})
	}
	return net
}

func testParams() directory.VoteParams {
	return directory.VoteParams{EpochStart: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), EpochLength: time.Hour, RotationEpochs: 24, MaxEntries: 2, MaxExits: 2, LayerSize: 2}
}

// TestConsensusDeterministic: the same votes, in any order, give the same
// bytes; a different previous consensus may change the tie-breaks but the
// same one never does.
func TestConsensusDeterministic(t *testing.T) {
	net := threeAuthorityNetwork(t)
	var nodes []*testNode
	for range 4 {
		nodes = append(nodes, newTestNode(t, autoNode), newTestNode(t, mixOnly))
	}
	votes := []verifiedVote{voteOf(t, 0, nodes, 0.9), voteOf(t, 0, nodes, 0.5), voteOf(t, 0, nodes[:6], 1)}
	in := consensusInput{net: net, epoch: 0, params: testParams(), votes: votes}
	top, _, err := computeConsensus(in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := directory.EncodeConsensus(net, top)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		shuffled := consensusInput{net: net, epoch: 0, params: testParams()}
		for _, i := range rand.Perm(len(votes)) {
			v := votes[i]
			order := rand.Perm(len(v.descs))
			sv := verifiedVote{vote: &directory.Vote{Epoch: 0}}
			for _, j := range order {
				sv.vote.Nodes = append(sv.vote.Nodes, v.vote.Nodes[j])
				sv.descs = append(sv.descs, v.descs[j])
			}
			shuffled.votes = append(shuffled.votes, sv)
		}
		got, _, err := computeConsensus(shuffled)
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := directory.EncodeConsensus(net, got)
		if !bytes.Equal(doc, want) {
			t.Fatalf("shuffled votes gave another document:\n%s\n%s", doc, want)
		}
	}
	if top.Routable() != nil {
		t.Fatalf("consensus not routable: %v", top.Routable())
	}
	// Nodes 6 and 7 are in two votes of three: in. Median of 0.9, 0.5 is 0.7.
	for _, n := range nodes {
		if _, ok := top.NodeByIdentity(n.id()); !ok {
			t.Fatalf("node %s left out", n.id())
		}
	}
	if n, _ := top.NodeByIdentity(nodes[7].id()); n.Performance != 0.7 {
		t.Fatalf("node in two votes (0.9, 0.5): performance %v, want the median 0.7", n.Performance)
	}
	if n, _ := top.NodeByIdentity(nodes[0].id()); n.Performance != 0.9 {
		t.Fatalf("node in three votes (0.9, 0.5, 1): performance %v, want the median 0.9", n.Performance)
	}
}

// TestConsensusMajorityOfSameEntry: a node needs a majority of all the
// network's authorities listing it with the same keys and addresses.
func TestConsensusMajorityOfSameEntry(t *testing.T) {
	net := threeAuthorityNetwork(t)
	base := []*testNode{newTestNode(t, entryGW), newTestNode(t, exitGW), newTestNode(t, mixOnly), newTestNode(t, mixOnly), newTestNode(t, mixOnly)}
	onlyOne := newTestNode(t, mixOnly)
	split := newTestNode(t, mixOnly)
	// The same identity with another address.
	splitOther := &testNode{priv: split.priv, desc: split.desc}
	splitOther.desc.MixnetAddr = "127.0.0.1:9999"

	withExtra := func(extra ...*testNode) []*testNode { return append(append([]*testNode{}, base...), extra...) }
	in := consensusInput{net: net, epoch: 0, params: testParams(), votes: []verifiedVote{
		voteOf(t, 0, withExtra(onlyOne, split), 1),
		voteOf(t, 0, withExtra(splitOther), 1),
		voteOf(t, 0, withExtra(), 1),
	}}
	top, _, err := computeConsensus(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range base {
		if r, _ := top.RoleOf(n.id()); r == directory.RoleNone {
			t.Errorf("node in every vote left out")
		}
	}
	if r, _ := top.RoleOf(onlyOne.id()); r != directory.RoleNone {
		t.Error("a node in one vote of three is in")
	}
	if r, _ := top.RoleOf(split.id()); r != directory.RoleNone {
		t.Error("a node listed by two authorities with different addresses is in")
	}
	// Two votes out of three present: a majority of the network (2) still
	// suffices; one vote does not make a node.
	in.votes = in.votes[:1]
	top, _, _ = computeConsensus(in)
	if r, _ := top.RoleOf(base[0].id()); r != directory.RoleNone {
		t.Error("one vote of three put a node in")
	}
}
