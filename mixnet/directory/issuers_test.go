package directory

import (
	"errors"
	"testing"
	"time"
)

// TestIssuerKeysInVotes: an authority's vote carries its own ticket keys
// only, in order; a key of another authority, disorder, a repeat or an
// oversized key is refused.
func TestIssuerKeysInVotes(t *testing.T) {
	ta := newTestAuthorities(t, 3, 2)
	self, other := ta.net.Authorities[1].Key, ta.net.Authorities[0].Key
	key := func(a Key, typ uint8, expiry int64) IssuerKey {
		return IssuerKey{Authority: a, Type: typ, Expiry: expiry, Key: []byte{1, 2, 3}}
	}
	v := func(keys ...IssuerKey) SignedVote {
		sv, err := SignVote(ta.keys[1], &Vote{
			Epoch: 7, IssuedAt: time.Now().UTC(), Nodes: []VoteNode{}, Issuers: keys,
			Params: VoteParams{EpochStart: time.Now().UTC(), EpochLength: time.Hour, RotationEpochs: 24, MaxEntries: 1, MaxExits: 1, LayerSize: 1},
		})
		if err != nil {
			t.Fatal(err)
		}
		return sv
	}
	got, _, err := v(key(self, 1, 10), key(self, 1, 20), key(self, 3, 10)).Verify(ta.net, 7)
	if err != nil || len(got.Issuers) != 3 {
		t.Fatalf("vote with its own keys: %v", err)
	}
	big := key(self, 1, 10)
	big.Key = make([]byte, MaxIssuerKeySize+1)
	for name, keys := range map[string][]IssuerKey{
		"another authority's key": {key(self, 1, 10), key(other, 1, 10)},
		"out of order":            {key(self, 1, 20), key(self, 1, 10)},
		"repeated":                {key(self, 1, 10), key(self, 1, 10)},
		"oversized":               {big},
		"empty key":               {{Authority: self, Type: 1, Expiry: 10}},
	} {
		if _, _, err := v(keys...).Verify(ta.net, 7); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	tooMany := make([]IssuerKey, MaxIssuerKeysPerAuthority+1)
	for i := range tooMany {
		tooMany[i] = key(self, 1, int64(i))
	}
	if _, _, err := v(tooMany...).Verify(ta.net, 7); !errors.Is(err, ErrInvalid) {
		t.Errorf("too many keys: %v", err)
	}
}
