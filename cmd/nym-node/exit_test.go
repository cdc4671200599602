package main

import (
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/nym-go/nym/ipr/exit"
	"github.com/nym-go/nym/mixnet/node"
)

func TestWantsRouter(t *testing.T) {
	for mode, want := range map[node.Mode]bool{
		node.ModeExitGateway: true, node.ModeAuto: true,
		node.ModeMixnode: false, node.ModeEntryGateway: false,
	} {
		if got := wantsRouter(mode); got != want {
			t.Errorf("wantsRouter(%s) = %v, want %v", mode, got, want)
		}
	}
}

func exitNodeConfig(t *testing.T) node.Config {
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Mode = node.ModeExitGateway
	cfg.DirectoryURL = "http://127.0.0.1:1"
	cfg.DirectoryKey = base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	return cfg
}

func TestPrepareRouterOff(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	cfg := exitNodeConfig(t)
	if r, err := (&exitFlags{noRouter: true}).prepareRouter(cfg, log); r != nil || err != nil {
		t.Fatalf("--no-ip-router: router %v, err %v", r, err)
	}
	cfg.Mode = node.ModeMixnode
	if r, err := (&exitFlags{}).prepareRouter(cfg, log); r != nil || err != nil {
		t.Fatalf("mixnode: router %v, err %v", r, err)
	}
}

func TestPrepareRouterLoadsIdentityAndPolicy(t *testing.T) {
	if !exit.HasNetAdmin() {
		t.Skip("without CAP_NET_ADMIN the router is not prepared (covered by the warning path)")
	}
	log := slog.New(slog.DiscardHandler)
	cfg := exitNodeConfig(t)
	policy := filepath.Join(t.TempDir(), "policy")
	if err := os.WriteFile(policy, []byte("reject *:6667\naccept *:*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := (&exitFlags{policyFile: policy, uplink: "eth9"}).prepareRouter(cfg, log)
	if err != nil || r == nil {
		t.Fatalf("prepareRouter: %v, %v", r, err)
	}
	st, err := os.Stat(filepath.Join(cfg.DataDir, exit.IdentityFileName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("router.key: %v, %v", st, err)
	}
	again, err := exit.LoadOrCreateIdentity(cfg.DataDir)
	if err != nil || again.Public != r.key {
		t.Fatalf("router key not persistent: %v", err)
	}
	if r.cfg.Policy == nil || len(r.cfg.Policy.Rules) != 2 || r.cfg.Uplink != "eth9" {
		t.Fatalf("router config: %+v", r.cfg)
	}

	if err := os.WriteFile(policy, []byte("allow everything"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&exitFlags{policyFile: policy}).prepareRouter(cfg, log); err == nil {
		t.Fatal("a bad policy file was accepted")
	}
}
