package socks

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCurl checks real-client interoperability; skipped without curl.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	alice, other := newTestDialer(t), newTestDialer(t)
	s := &Server{Dialer: other, Isolate: func(u string) Dialer {
		if u == "alice" {
			return alice
		}
		return nil
	}}
	addr := startServer(t, s)
	port := startHTTP(t)
	byName := urlFor(testName, port, "/curl")
	byIP := urlFor("127.0.0.1", port, "/curl")

	tests := []struct {
		name string
		args []string
		url  string
	}{
		{"socks5-hostname", []string{"--socks5-hostname", addr}, byName},
		{"socks5-hostname user", []string{"--socks5-hostname", addr, "--proxy-user", "alice:pw"}, byName},
		{"socks5", []string{"--socks5", addr}, byIP},
		{"socks4a", []string{"--socks4a", addr}, byName},
		{"socks4", []string{"--socks4", addr}, byIP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			args := append([]string{"-sS", "--max-time", "10"}, tc.args...)
			cmd := exec.CommandContext(ctx, curl, append(args, tc.url)...)
			cmd.Env = noProxyEnv()
			out, err := cmd.CombinedOutput()
			if err != nil || string(out) != "hello from /curl" {
				t.Errorf("curl %v: %q, %v", args, out, err)
			}
		})
	}
	if alice.dialCount() != 1 {
		t.Errorf("curl with --proxy-user alice: alice's dialer dialed %d times, want 1", alice.dialCount())
	}
	// A connect is counted after its reply is written.
	waitFor(t, fmt.Sprintf("%d connects counted", len(tests)), func() bool { return s.Stats().Connects == uint64(len(tests)) })
}

// noProxyEnv is the environment without proxy settings, which would
// otherwise compete with the command-line proxy.
func noProxyEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasSuffix(strings.ToLower(k), "_proxy") {
			env = append(env, kv)
		}
	}
	return env
}
