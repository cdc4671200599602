package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/client"
)

func TestConfigFromFlags(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	const key = "1CpFzz7_T2HesO1GlBeau2ApZcWLk6SgZOXoXL3Pm8E"
	o := options{directoryURL: "http://127.0.0.1:1", directoryKey: key, hopDelay: time.Millisecond, sendInterval: 2 * time.Millisecond}
	cfg, err := o.config(log)
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.Loopix != (client.Loopix{HopDelay: time.Millisecond, SendInterval: 2 * time.Millisecond}) {
		t.Fatalf("loopix %+v", *cfg.Loopix)
	}
	o.fast = true
	if cfg, _ = o.config(log); *cfg.Loopix != (client.Loopix{}) {
		t.Fatalf("--fast left %+v", *cfg.Loopix)
	}
	for name, bad := range map[string]options{
		"no directory": {directoryKey: key},
		"bad key":      {directoryURL: "http://x", directoryKey: "abc"},
		"bad gateway":  {directoryURL: "http://x", directoryKey: key, gateway: "nope"},
	} {
		if _, err := bad.config(log); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCommandRejectsMissingFlags(t *testing.T) {
	cmd := newRoot()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--identity", t.TempDir() + "/k"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--directory") {
		t.Fatalf("ran without a directory: %v", err)
	}
	cmd = newRoot()
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"ping", "not-an-address", "hi"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "malformed address") {
		t.Fatalf("ping with a bad address: %v", err)
	}
}
