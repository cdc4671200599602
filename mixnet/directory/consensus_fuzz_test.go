package directory

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"
)

// fuzzNetwork is a fixed network of three authorities, k = 2, whose keys the
// fuzz targets sign with.
func fuzzNetwork() (*Network, []ed25519.PrivateKey) {
	net := &Network{Threshold: 2}
	var keys []ed25519.PrivateKey
	for i := range 3 {
		priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(10 + i)}, 32))
		keys = append(keys, priv)
		net.Authorities = append(net.Authorities, Authority{
			Name: string(rune('a' + i)), Key: Key(priv.Public().(ed25519.PublicKey)), URL: "http://192.0.2.1:" + string(rune('1'+i)),
		})
	}
	return net, keys
}

// FuzzParseNetwork feeds arbitrary bytes to the network-file decoder: it
// must never panic, and what it accepts must satisfy the threshold rule and
// survive Encode and a second parse with the same ID.
func FuzzParseNetwork(f *testing.F) {
	f.Add([]byte(testNetworkFile))
	f.Add([]byte("threshold = 1\n[[authority]]\nname=\"a\"\nkey=\"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\"\nurl=\"http://[2001:db8::1]:80\"\n"))
	f.Add([]byte("threshold = -1\ngenesis = 2026-01-01T00:00:00Z\n[[authority]]\n"))
	f.Add([]byte("[authority]\nname = 1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseNetwork(data)
		if err != nil {
			return
		}
		if total := len(n.Authorities); total == 0 || 2*n.Threshold <= total || n.Threshold > total {
			t.Fatalf("accepted threshold %d of %d", n.Threshold, total)
		}
		text, err := n.Encode()
		if err != nil {
			t.Fatalf("accepted network does not encode: %v", err)
		}
		back, err := ParseNetwork(text)
		if err != nil {
			t.Fatalf("encoded network does not parse: %v\n%s", err, text)
		}
		if back.ID() != n.ID() || !back.Genesis.Equal(n.Genesis) {
			t.Fatalf("network changed through Encode:\n%s", text)
		}
	})
}

// FuzzVerifyVote feeds arbitrary bytes to the vote verifier as an envelope,
// and as the body judged by what Verify runs once the signature holds.
func FuzzVerifyVote(f *testing.F) {
	net, keys := fuzzNetwork()
	sd, err := SignDescriptor(fuzzNodeKey, fuzzDescriptor())
	if err != nil {
		f.Fatal(err)
	}
	v := &Vote{Epoch: 7, IssuedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Params: VoteParams{EpochLength: time.Hour, RotationEpochs: 24, MaxEntries: 1, MaxExits: 1, LayerSize: 1},
		Nodes:  []VoteNode{{Descriptor: sd, Performance: 0.5}},
		Issuers: []IssuerKey{{Authority: net.Authorities[0].Key, Type: 1, Expiry: 86400, Key: []byte{1, 2, 3}},
			{Authority: net.Authorities[0].Key, Type: 3, Expiry: 86400, Key: []byte{4}}}}
	sv, err := SignVote(keys[0], v)
	if err != nil {
		f.Fatal(err)
	}
	envelope, _ := json.Marshal(sv)
	f.Add(envelope)
	f.Add([]byte(sv.Vote))
	f.Add([]byte(`{"vote":{},"signature":"AAAA"}`))
	f.Add([]byte(`{"epoch":7,"nodes":[{"descriptor":{},"performance":2}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var env SignedVote
		if json.Unmarshal(data, &env) == nil {
			if v, descs, err := env.Verify(net, 7); err == nil {
				checkAcceptedVote(t, v, descs)
			}
		}
		body := new(Vote)
		if json.Unmarshal(data, body) != nil {
			return
		}
		descs, err := body.check(7)
		if err != nil {
			return
		}
		checkAcceptedVote(t, body, descs)
	})
}

func checkAcceptedVote(t *testing.T, v *Vote, descs []Descriptor) {
	t.Helper()
	if v.Epoch != 7 || len(descs) != len(v.Nodes) || len(v.Nodes) > MaxVoteNodes {
		t.Fatalf("accepted vote of epoch %d with %d nodes, %d descriptors", v.Epoch, len(v.Nodes), len(descs))
	}
	seen := map[Key]bool{}
	for i, d := range descs {
		if seen[d.Identity] || d.validate() != nil || v.Nodes[i].Performance < 0 || v.Nodes[i].Performance > 1 {
			t.Fatalf("accepted vote node %d: %+v", i, v.Nodes[i])
		}
		seen[d.Identity] = true
	}
	if validateIssuerKeys(v.Issuers) != nil {
		t.Fatalf("accepted vote with issuer keys out of order, repeated or oversized: %+v", v.Issuers)
	}
	for _, k := range v.Issuers {
		if k.Authority != v.Authority {
			t.Fatalf("accepted vote of %s carrying a key of %s", v.Authority, k.Authority)
		}
	}
}

// FuzzVerifyConsensus feeds arbitrary bytes to the consensus verifier: as an
// envelope (whatever signatures it carries), and as a document that k
// authorities then sign, which must verify exactly when the body passes the
// checks Verify makes.
func FuzzVerifyConsensus(f *testing.F) {
	net, keys := fuzzNetwork()
	top := sampleTopology()
	doc, err := EncodeConsensus(net, top)
	if err != nil {
		f.Fatal(err)
	}
	sc := SignedConsensus{Topology: doc, Signatures: []ConsensusSignature{SignConsensus(keys[0], doc), SignConsensus(keys[2], doc)}}
	envelope, _ := json.Marshal(sc)
	f.Add(envelope)
	f.Add(doc)
	short := SignedConsensus{Topology: doc, Signatures: sc.Signatures[:1]}
	envelope, _ = json.Marshal(short)
	f.Add(envelope)
	f.Add([]byte(`{"topology":{},"signatures":[{"key":"AAAA","signature":"AAAA"}],"signature":"AAAA"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var env SignedConsensus
		if json.Unmarshal(data, &env) == nil {
			if top, err := env.Verify(net); err == nil {
				checkAcceptedTopology(t, top)
				if top.DirectoryKey != net.ID() {
					t.Fatalf("accepted a consensus of network %s", top.DirectoryKey)
				}
				signers, _ := env.validSigners(net)
				if len(signers) < net.Threshold {
					t.Fatalf("accepted a consensus with %d signers", len(signers))
				}
			}
		}
		body := new(Topology)
		if json.Unmarshal(data, body) != nil || len(data) > MaxTopologySize {
			return
		}
		passes := body.check(net.ID()) == nil
		signed := SignedConsensus{Topology: data, Signatures: []ConsensusSignature{SignConsensus(keys[1], data), SignConsensus(keys[2], data)}}
		_, err := signed.Verify(net)
		if passes != (err == nil) {
			t.Fatalf("body passes checks: %v, but Verify with k signatures says %v", passes, err)
		}
	})
}
