package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/nym-go/nym/mixnet/directory"

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

// After a stale tunnel the plan is fetched again and the silent gateway
// goes last, so the next attempt takes another one.
func TestFastRefreshPutsTheSilentGatewayLast(t *testing.T) {
	node := func(b byte) directory.Node {
		var n directory.Node
		n.Identity[0] = b
		return n
	}
	fresh := &fastPlan{rotation: 9, entries: []directory.Node{node(1), node(2), node(3)}, exits: []directory.Node{node(7), node(8)}}
	ft := &fastTunnel{
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		plan:     &fastPlan{rotation: 8, entries: []directory.Node{node(2)}, exits: []directory.Node{node(7)}},
		entryIdx: 5, exitIdx: 3,
		replan: func(context.Context) (*fastPlan, error) { return fresh, nil },
	}
	ft.refresh(t.Context(), node(1).Identity)
	if ft.plan.rotation != 9 || ft.entryIdx != 0 || ft.exitIdx != 0 {
		t.Fatalf("plan rotation %d, indexes %d %d; want the fresh plan from the start", ft.plan.rotation, ft.entryIdx, ft.exitIdx)
	}
	var got []byte
	for _, n := range ft.plan.entries {
		got = append(got, n.Identity[0])
	}
	if string(got) != "\x02\x03\x01" {
		t.Fatalf("entries %v, want 2 3 1", got)
	}
	// No consensus: the old plan, reordered.
	ft.replan = func(context.Context) (*fastPlan, error) { return nil, errors.New("no authority answers") }
	ft.refresh(t.Context(), node(7).Identity)
	if ft.plan.exits[0].Identity[0] != 8 || ft.plan.rotation != 9 {
		t.Fatalf("exits %v after a failed refresh", ft.plan.exits)
	}
}
