package directory

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// testAuthorities is a network of n authorities with their private keys;
// URLs are placeholders unless a test serves them.
type testAuthorities struct {
	net  *Network
	keys []ed25519.PrivateKey
}

func newTestAuthorities(t testing.TB, n, k int) *testAuthorities {
	t.Helper()
	ta := &testAuthorities{net: &Network{Threshold: k}}
	for i := range n {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ta.keys = append(ta.keys, priv)
		ta.net.Authorities = append(ta.net.Authorities, Authority{
			Name: "auth" + string(rune('1'+i)), Key: Key(priv.Public().(ed25519.PublicKey)),
			URL: "http://192.0.2." + string(rune('1'+i)) + ":8000",
		})
	}
	if err := ta.net.Validate(); err != nil {
		t.Fatal(err)
	}
	return ta
}

// signed returns top as a consensus document of the network signed by the
// authorities with the given indexes.
func (ta *testAuthorities) signed(t testing.TB, top *Topology, signers ...int) SignedConsensus {
	t.Helper()
	doc, err := EncodeConsensus(ta.net, top)
	if err != nil {
		t.Fatal(err)
	}
	sc := SignedConsensus{Topology: doc}
	for _, i := range signers {
		sc.Signatures = append(sc.Signatures, SignConsensus(ta.keys[i], doc))
	}
	return sc
}

func TestConsensusNeedsThresholdOfDistinctAuthorities(t *testing.T) {
	ta := newTestAuthorities(t, 3, 2)
	top, _ := testTopology(t)
	if _, err := ta.signed(t, top, 0, 2).Verify(ta.net); err != nil {
		t.Fatalf("k signatures: %v", err)
	}
	all, err := ta.signed(t, top, 2, 1, 0).Verify(ta.net)
	if err != nil {
		t.Fatalf("n signatures: %v", err)
	}
	if all.DirectoryKey != ta.net.ID() || all.Routable() != nil {
		t.Fatalf("verified consensus: key %s, routable %v", all.DirectoryKey, all.Routable())
	}

	// k − 1 signatures.
	_, err = ta.signed(t, top, 1).Verify(ta.net)
	if !errors.Is(err, ErrTooFewSignatures) || !strings.Contains(err.Error(), "1 valid signatures") || !strings.Contains(err.Error(), "2 needed") {
		t.Fatalf("k-1 signatures: %v", err)
	}
	// The same authority twice counts once.
	sc := ta.signed(t, top, 1)
	sc.Signatures = append(sc.Signatures, sc.Signatures[0])
	if _, err := sc.Verify(ta.net); !errors.Is(err, ErrTooFewSignatures) || !strings.Contains(err.Error(), "auth2 signed twice") {
		t.Fatalf("duplicate signer: %v", err)
	}
	// A key outside the network file does not count, and is named.
	stranger := newDirectoryKey(t)
	sc = ta.signed(t, top, 0)
	sc.Signatures = append(sc.Signatures, SignConsensus(stranger, sc.Topology))
	_, err = sc.Verify(ta.net)
	if !errors.Is(err, ErrTooFewSignatures) || !strings.Contains(err.Error(), Key(stranger.Public().(ed25519.PublicKey)).String()+" is not in the network file") {
		t.Fatalf("stranger's signature: %v", err)
	}
	// A signature over other bytes (another document) does not count.
	other, _ := testTopology(t)
	sc = ta.signed(t, top, 0)
	otherDoc := ta.signed(t, other, 1)
	sc.Signatures = append(sc.Signatures, otherDoc.Signatures[0])
	if _, err := sc.Verify(ta.net); !errors.Is(err, ErrTooFewSignatures) || !strings.Contains(err.Error(), "auth2: signature does not verify") {
		t.Fatalf("signature over another document: %v", err)
	}
	if sc.AddSignature(ta.net, otherDoc.Signatures[0]) {
		t.Fatal("AddSignature took a signature over other bytes")
	}
	if !sc.AddSignature(ta.net, SignConsensus(ta.keys[2], sc.Topology)) || sc.AddSignature(ta.net, SignConsensus(ta.keys[2], sc.Topology)) {
		t.Fatal("AddSignature: want the first signature of auth3 added, the second refused")
	}
	// A consensus made for another network (same keys, other threshold)
	// does not verify even with enough signatures.
	net3 := *ta.net
	net3.Threshold = 3
	sc = ta.signed(t, top, 0, 1, 2)
	if _, err := sc.Verify(&net3); !errors.Is(err, ErrUntrustedDirectory) {
		t.Fatalf("consensus of another network: %v", err)
	}
}

func TestSingleAuthorityAcceptsLegacyTopology(t *testing.T) {
	dir := newDirectoryKey(t)
	top, _ := testTopology(t)
	st, err := SignTopology(dir, top)
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := json.Marshal(st)
	var sc SignedConsensus
	if err := json.Unmarshal(wire, &sc); err != nil {
		t.Fatal(err)
	}
	single := SingleAuthority("http://192.0.2.1:8000", Key(dir.Public().(ed25519.PublicKey)))
	if _, err := sc.Verify(single); err != nil {
		t.Fatalf("n=1 legacy topology: %v", err)
	}
	ta := newTestAuthorities(t, 3, 2)
	ta.net.Authorities[0].Key = Key(dir.Public().(ed25519.PublicKey))
	if _, err := sc.Verify(ta.net); !errors.Is(err, ErrTooFewSignatures) {
		t.Fatalf("one authority's topology under a network of 3: %v", err)
	}
}

func TestVoteVerify(t *testing.T) {
	ta := newTestAuthorities(t, 3, 2)
	n := newTestNode(t, autoNode)
	v := &Vote{
		Epoch: 7, IssuedAt: time.Now().UTC(),
		Params: VoteParams{EpochStart: time.Now().UTC(), EpochLength: time.Hour, RotationEpochs: 24, MaxEntries: 1, MaxExits: 1, LayerSize: 1},
		Nodes:  []VoteNode{{Descriptor: n.signed(t, time.Now()), Performance: 0.75}},
	}
	sv, err := SignVote(ta.keys[1], v)
	if err != nil {
		t.Fatal(err)
	}
	got, descs, err := sv.Verify(ta.net, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got.Authority != ta.net.Authorities[1].Key || len(descs) != 1 || descs[0].Identity != n.id() {
		t.Fatalf("vote: %+v %+v", got, descs)
	}
	if _, _, err := sv.Verify(ta.net, 8); !errors.Is(err, ErrWrongEpoch) || !strings.Contains(err.Error(), "vote of auth2") || !strings.Contains(err.Error(), "for epoch 7, epoch 8 was asked for") {
		t.Fatalf("vote for another epoch: %v", err)
	}
	stranger := newDirectoryKey(t)
	sv2, _ := SignVote(stranger, v)
	if _, _, err := sv2.Verify(ta.net, 7); !errors.Is(err, ErrUntrustedDirectory) {
		t.Fatalf("stranger's vote: %v", err)
	}
	// A vote whose signature names an authority but was made by another.
	sv3 := sv
	sv3.Signature = ed25519.Sign(ta.keys[0], signedMessage(voteDomain, sv.Vote))
	if _, _, err := sv3.Verify(ta.net, 7); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("vote signed by another authority: %v", err)
	}
	// Duplicate nodes are refused.
	v.Nodes = append(v.Nodes, v.Nodes[0])
	sv4, _ := SignVote(ta.keys[1], v)
	if _, _, err := sv4.Verify(ta.net, 7); !errors.Is(err, ErrInvalid) {
		t.Fatalf("vote listing a node twice: %v", err)
	}
}
