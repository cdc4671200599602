package vpn

import (
	"encoding/json"
	"testing"
)

// The daemon sends Stats as JSON and `nymvpn status` reads it back.
func TestStateJSONRoundTrip(t *testing.T) {
	for s := StateConnecting; s <= StateClosed; s++ {
		b, err := json.Marshal(Stats{State: s})
		if err != nil {
			t.Fatal(err)
		}
		var got Stats
		if err := json.Unmarshal(b, &got); err != nil || got.State != s {
			t.Fatalf("%v: got %v, %v", s, got.State, err)
		}
	}
	var bad State
	if err := bad.UnmarshalText([]byte("sleeping")); err == nil {
		t.Fatal("accepted an unknown state")
	}
}
