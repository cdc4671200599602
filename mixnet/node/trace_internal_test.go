package node

import (
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"testing"
)

// A New that fails (here: its port is taken) leaves no trace file behind,
// so a retry can create it; a second node on the same file is refused
// rather than overwriting the first one's trace.
func TestTraceFileLifecycle(t *testing.T) {
	cfg := isolatedConfig(t, ModeEntryGateway)
	cfg.TraceFile = "trace"
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.MixnetListen = taken.Addr().String()
	if _, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Fatal("New succeeded on a taken port")
	}
	if _, err := os.Stat(cfg.TracePath()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed New left its trace file: %v", err)
	}
	taken.Close()

	n := newUnrun(t, cfg)
	if n.Trace() == nil || n.gateway.Trace() == nil {
		t.Fatal("trace_file set, but the node or its gateway records nothing")
	}
	fi, err := os.Stat(cfg.TracePath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("trace file mode %v, want 0600", fi.Mode().Perm())
	}
	cfg2 := cfg
	cfg2.MixnetListen, cfg2.HTTPListen, cfg2.ClientsListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if _, err := New(cfg2, Options{Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Fatal("a second node opened the same trace file")
	}
	if _, err := os.Stat(cfg.TracePath()); err != nil {
		t.Fatalf("the refused node removed the first one's trace: %v", err)
	}
}

// Without trace_file, nothing records.
func TestTraceOffByDefault(t *testing.T) {
	n := newUnrun(t, isolatedConfig(t, ModeEntryGateway))
	if n.trace != nil || n.Trace() != nil || n.gateway.Trace() != nil {
		t.Fatal("a node without trace_file traces")
	}
}

// newUnrun makes a gateway node that never runs, and closes what New
// opened when the test ends.
func newUnrun(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.closeListeners()
		n.gateway.Close()
		n.closeTrace()
	})
	return n
}
