package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestHandleBoundsTheRequest: a local user who can reach the control socket
// must not make the root daemon buffer an endless request. The old handler
// read a JSON string of any length into memory.
func TestHandleBoundsTheRequest(t *testing.T) {
	d := &daemon{log: slog.New(slog.DiscardHandler)}
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); d.handle(context.Background(), server) }()

	// An opening that stays valid JSON as long as it is fed: a string that
	// never ends.
	client.SetWriteDeadline(time.Now().Add(time.Minute))
	written, _ := io.WriteString(client, `{"op":"status","pad":"`)
	chunk := strings.Repeat("a", 4096)
	for written < 16*maxRequest {
		n, err := io.WriteString(client, chunk)
		written += n
		if err != nil {
			break
		}
	}
	<-done
	client.Close()
	if written > maxRequest+len(chunk) {
		t.Fatalf("the daemon read %d bytes of one request; at most %d expected", written, maxRequest+len(chunk))
	}
}

// TestConnectRequestSurvivesTheSocket: --dns is parsed on the command line;
// the daemon checks the request again after it crossed the socket as JSON,
// where the unparsed flag text is gone. The resolvers must survive that.
func TestConnectRequestSurvivesTheSocket(t *testing.T) {
	var req connectRequest
	fs := pflag.NewFlagSet("connect", pflag.ContinueOnError)
	req.flags(fs)
	if err := fs.Parse([]string{"--directory", "http://192.0.2.10:8000", "--directory-key", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE", "--dns", "198.51.100.2,2001:db8::53"}); err != nil {
		t.Fatal(err)
	}
	if err := req.check(); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(req.DNS)
	data, err := json.Marshal(request{Op: "connect", Connect: &req})
	if err != nil {
		t.Fatal(err)
	}
	var got request
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if err := got.Connect.check(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Connect.DNS, want) {
		t.Fatalf("DNS after the socket: %v, want %v", got.Connect.DNS, want)
	}
}

// --network sends the network file's text, which the daemon parses: it
// opens no path the user names. It excludes --directory.
func TestConnectRequestCarriesTheNetworkFile(t *testing.T) {
	text := "threshold = 2\n" +
		"[[authority]]\nname = \"a1\"\nkey = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\"\nurl = \"http://192.0.2.10:8000\"\n" +
		"[[authority]]\nname = \"a2\"\nkey = \"" + strings.Repeat("B", 42) + "Q\"\nurl = \"http://192.0.2.11:8000\"\n" +
		"[[authority]]\nname = \"a3\"\nkey = \"" + strings.Repeat("C", 42) + "Q\"\nurl = \"http://192.0.2.12:8000\"\n"
	path := filepath.Join(t.TempDir(), "network.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var req connectRequest
	fs := pflag.NewFlagSet("connect", pflag.ContinueOnError)
	req.flags(fs)
	if err := fs.Parse([]string{"--network", path}); err != nil {
		t.Fatal(err)
	}
	if err := req.check(); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(request{Op: "connect", Connect: &req})
	if err != nil {
		t.Fatal(err)
	}
	var got request
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if err := got.Connect.check(); err != nil {
		t.Fatal(err)
	}
	if n := got.Connect.network; n == nil || n.Threshold != 2 || len(n.Authorities) != 3 {
		t.Fatalf("network after the socket: %+v", n)
	}
	req.DirectoryURL, req.DirectoryKey = "http://192.0.2.10:8000", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"
	if err := req.check(); err == nil {
		t.Fatal("--network with --directory accepted")
	}
}
