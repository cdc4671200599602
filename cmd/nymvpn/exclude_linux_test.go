package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nym-go/nym/tun"
)

// TestHostKeepsTheExclusionAcrossAReconnect: the host's Up makes the
// exclusion group and the kill switch lets it through; a reconnect
// (Unroute, then Up, as fast mode's new leg does) blocks its program
// meanwhile and then excludes the same program again; Down removes the
// group.
func TestHostKeepsTheExclusionAcrossAReconnect(t *testing.T) {
	l := newLab(t)
	out, err := exec.Command("findmnt", "-n", "-t", "cgroup2", "-o", "TARGET").Output()
	mount, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil || mount == "" {
		t.Skipf("needs a cgroup2 hierarchy (findmnt: %v)", err)
	}
	// The server is off the uplink's link: only the default route gets
	// there.
	run(t, "ip", "-n", l.world, "addr", "add", "198.51.100.1/32", "dev", "w0")
	var ln net.Listener
	l.in(l.world, func() error {
		ln, err = net.Listen("tcp", "198.51.100.1:80")
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()

	state := filepath.Join(l.dir, "state", "platform.state")
	var h host
	var dev tun.Device
	up := func() {
		l.in(l.client, func() error {
			var err error
			dev, err = h.Up([]netip.Prefix{netip.MustParsePrefix("10.0.0.7/32")}, 1420, nil)
			return err
		})
	}
	l.in(l.client, func() error {
		var err error
		if h, err = newHost(state); err != nil {
			return err
		}
		return h.KillSwitch(netip.MustParseAddrPort("192.0.2.1:8000"))
	})
	t.Cleanup(func() {
		if dev != nil {
			dev.Close()
		}
		l.in(l.client, h.Down)
	})
	up()

	fi, err := os.Stat("/run/netns/" + l.client)
	if err != nil {
		t.Fatal(err)
	}
	group := filepath.Join(mount, "nymvpn-exclude-"+strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10))
	probe := excludedProber(t, l.client, group)

	if got := probe(); !strings.HasPrefix(got, "192.0.2.2:") {
		t.Fatalf("excluded program after Up: %q, want the server to see 192.0.2.2", got)
	}
	dev.Close()
	dev = nil
	l.in(l.client, h.Unroute)
	if got := probe(); got != "FAIL" {
		t.Errorf("excluded program while the tunnel is not routed: %q, want it blocked", got)
	}
	up()
	if got := probe(); !strings.HasPrefix(got, "192.0.2.2:") {
		t.Errorf("the same excluded program after the reconnect: %q, want the server to see 192.0.2.2", got)
	}
	dev.Close()
	dev = nil
	l.in(l.client, h.Down)
	if _, err := os.Stat(group); !os.IsNotExist(err) {
		t.Errorf("the group is still there after Down: %v", err)
	}
}

// excludedProber starts a shell in namespace ns that joins group and, for
// each probe, connects to 198.51.100.1:80 and returns the server's line
// (the address it saw) or "FAIL".
func excludedProber(t *testing.T, ns, group string) (probe func() string) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, "bash", "-c", `echo $$ > "$G/cgroup.procs" || exit 1
		while read -r _; do
			timeout 5 bash -c 'exec 3<>/dev/tcp/198.51.100.1/80 && read -r l <&3 && echo "$l"' || echo FAIL
		done`)
	cmd.Env = append(os.Environ(), "G="+group)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return func() string {
		t.Helper()
		if _, err := io.WriteString(in, "\n"); err != nil {
			t.Fatalf("prober: %v", err)
		}
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the prober exited")
			}
			return l
		case <-time.After(time.Minute):
			t.Fatal("the prober did not answer in a minute")
		}
		return ""
	}
}
