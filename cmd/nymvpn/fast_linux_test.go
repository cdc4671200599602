package main

import (
	"strings"
	"testing"

	"github.com/nym-go/nym/vpn"
)

// "fast" means one thing: --mode fast. The old --profile fast is refused
// with a pointer to both names.
func TestModeAndProfileNames(t *testing.T) {
	base := connectRequest{DirectoryURL: "http://192.0.2.1:8000", DirectoryKey: testDirKey}
	for _, tc := range []struct {
		mode, profile string
		ok            bool
		wantMode      string
	}{
		{"", "", true, modeAnonymous},
		{"anonymous", "default", true, modeAnonymous},
		{"fast", "", true, modeFast},
		{"anonymous", "nodelay", true, modeAnonymous},
		{"turbo", "", false, ""},
		{"anonymous", "fast", false, ""},
	} {
		r := base
		r.Mode, r.Profile = tc.mode, tc.profile
		err := r.check()
		if (err == nil) != tc.ok {
			t.Errorf("--mode %q --profile %q: %v, want ok %v", tc.mode, tc.profile, err, tc.ok)
		}
		if err == nil && r.Mode != tc.wantMode {
			t.Errorf("--mode %q: mode %q, want %q", tc.mode, r.Mode, tc.wantMode)
		}
	}
	_, err := vpn.ProfileByName("fast")
	if err == nil || !strings.Contains(err.Error(), "nodelay") || !strings.Contains(err.Error(), "--mode fast") {
		t.Errorf("--profile fast: %v; want a pointer to nodelay and --mode fast", err)
	}
}

func TestWGKeysDiffer(t *testing.T) {
	a, err := newWGKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newWGKey()
	if a.pub == b.pub || a.priv == b.priv || a.pub == [32]byte{} {
		t.Fatal("two WireGuard keys are the same or empty")
	}
}
