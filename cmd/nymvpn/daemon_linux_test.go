package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/netnstest"
	"github.com/nym-go/nym/platform"
)

// Root tests of the daemon's host side. Each runs the daemon as a child
// process (this test binary, TestDaemonHelperProcess) inside a client
// network namespace made for the test, linked to a "world" namespace, and
// counts with nftables counters what leaves the client's uplink c0.

// daemonHelperEnv makes the test binary a daemon: "socket|state|nofile".
const daemonHelperEnv = "NYMVPN_TEST_DAEMON"

func TestDaemonHelperProcess(t *testing.T) {
	spec := os.Getenv(daemonHelperEnv)
	if spec == "" {
		t.Skip("helper process of the daemon tests")
	}
	f := strings.Split(spec, "|")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if n, _ := strconv.ParseUint(f[2], 10, 64); n > 0 {
		var lim syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		lim.Cur = n
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.Error("setrlimit", "err", err)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	d := &daemon{log: log, statePath: f[1]}
	err := d.serve(ctx, f[0])
	log.Info("serve returned", "err", err)
	os.Exit(0)
}

var nsSeq atomic.Int32

func requireRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespace test: needs root")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("network namespace test: needs %s", bin)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lab is a client namespace (uplink c0, 192.0.2.2, default route via
// 192.0.2.1, no IPv6 on the uplink so nothing but our traffic is counted)
// and a world namespace (w0, 192.0.2.1 and whatever addresses a test adds).
type lab struct {
	t             *testing.T
	client, world string
	dir           string
}

func newLab(t *testing.T) *lab {
	requireRoot(t)
	n := nsSeq.Add(1)
	l := &lab{t: t, dir: t.TempDir(),
		client: fmt.Sprintf("nvc%d-%d", os.Getpid(), n), world: fmt.Sprintf("nvw%d-%d", os.Getpid(), n)}
	for _, ns := range []string{l.client, l.world} {
		exec.Command("ip", "netns", "del", ns).Run() // a stale one of a killed run
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("delete namespace %s: %v %s", ns, err, out)
			}
		})
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", l.client, "link", "add", "c0", "type", "veth", "peer", "name", "w0", "netns", l.world)
	run(t, "ip", "netns", "exec", l.client, "sysctl", "-q", "-w", "net.ipv6.conf.c0.disable_ipv6=1")
	run(t, "ip", "-n", l.client, "addr", "add", "192.0.2.2/24", "dev", "c0")
	run(t, "ip", "-n", l.world, "addr", "add", "192.0.2.1/24", "dev", "w0")
	run(t, "ip", "-n", l.client, "link", "set", "c0", "up")
	run(t, "ip", "-n", l.world, "link", "set", "w0", "up")
	run(t, "ip", "-n", l.client, "route", "add", "default", "via", "192.0.2.1")
	return l
}

// count installs a counter named name in the client namespace, counting the
// packets that leave c0 and match match (nft syntax), after every filter.
func (l *lab) count(name, match string) func() int64 {
	t := l.t
	run(t, "ip", "netns", "exec", l.client, "nft", fmt.Sprintf(`add table inet test_count
		add counter inet test_count %[1]s
		add chain inet test_count post { type filter hook postrouting priority 500; }
		add rule inet test_count post oifname "c0" %[2]s counter name %[1]s`, name, match))
	return func() int64 {
		out := run(t, "ip", "netns", "exec", l.client, "nft", "list", "counter", "inet", "test_count", name)
		m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no counter in %q", out)
		}
		v, _ := strconv.ParseInt(m[1], 10, 64)
		return v
	}
}

func (l *lab) resetCounters() {
	run(l.t, "ip", "netns", "exec", l.client, "nft", "reset", "counters", "table", "inet", "test_count")
}

// in runs fn on a thread in namespace ns (sockets it opens stay there).
func (l *lab) in(ns string, fn func() error) {
	l.t.Helper()
	if err := netnstest.DoNamed(ns, fn); err != nil {
		l.t.Fatalf("in %s: %v", ns, err)
	}
}

// poke sends unmarked traffic from the client: datagrams and a TCP dial to
// dst. It reports whether the dial got through.
func (l *lab) poke(dst string) bool {
	var ok bool
	l.in(l.client, func() error {
		if u, err := net.Dial("udp", dst); err == nil {
			for range 5 {
				u.Write([]byte("leak?"))
			}
			u.Close()
		}
		c, err := net.DialTimeout("tcp", dst, time.Second)
		if err == nil {
			ok = true
			c.Close()
		}
		return nil
	})
	return ok
}

// daemonProc is a daemon child process in the client namespace.
type daemonProc struct {
	cmd           *exec.Cmd
	socket, state string
	logPath       string
	exited        chan struct{}
}

func (l *lab) startDaemon(nofile int) *daemonProc {
	t := l.t
	t.Helper()
	d := &daemonProc{
		socket:  filepath.Join(l.dir, "nymvpn.sock"),
		state:   filepath.Join(l.dir, "state", "platform.state"),
		logPath: filepath.Join(l.dir, fmt.Sprintf("daemon-%d.log", time.Now().UnixNano())),
		exited:  make(chan struct{}),
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command("ip", "netns", "exec", l.client, os.Args[0], "-test.run=^TestDaemonHelperProcess$")
	d.cmd.Env = append(os.Environ(), daemonHelperEnv+"="+d.socket+"|"+d.state+"|"+strconv.Itoa(nofile))
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM) // `ip netns exec` execs: this is the daemon
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(d.logPath)
			t.Logf("daemon log:\n%s", b)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := call(d.socket, request{Op: "status"}); err == nil {
			return d
		}
		select {
		case <-d.exited:
			b, _ := os.ReadFile(d.logPath)
			t.Fatalf("the daemon exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not come up")
		}
	}
}

func (d *daemonProc) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// plantKillSwitch leaves in the client namespace what a daemon that crashed
// while connected leaves: its kill switch and the state file recording it.
func (l *lab) plantKillSwitch(state string) {
	l.in(l.client, func() error {
		ks, err := platform.EnableKillSwitch(state, platform.KillSwitchRules{TUN: tunName, Mark: fwMark,
			Allowed: []platform.Endpoint{{Addr: netip.MustParseAddrPort("192.0.2.1:9000"), Protocol: platform.TCP}}})
		if err != nil {
			return err
		}
		return ks.Close() // the process "dies": the rules stay
	})
}

// TestDaemonRestartKeepsTheKillSwitch: a daemon that starts after a crash
// keeps the kill switch the crashed one left, also through a connect whose
// directory is unreachable: nothing unmarked leaves the uplink.
func TestDaemonRestartKeepsTheKillSwitch(t *testing.T) {
	l := newLab(t)
	leaks := l.count("unmarked", fmt.Sprintf("meta mark != %#x", fwMark))
	// The counter counts: without a kill switch the pokes leave.
	l.poke("192.0.2.1:5000")
	if leaks() == 0 {
		t.Fatal("the counter did not count unmarked packets leaving c0")
	}
	state := filepath.Join(l.dir, "state", "platform.state")
	l.plantKillSwitch(state)
	l.resetCounters()

	d := l.startDaemon(0)
	l.poke("192.0.2.1:5000")
	if n := leaks(); n != 0 {
		t.Errorf("after the restart %d unmarked packets left c0: the kill switch was dropped", n)
	}
	st, err := call(d.socket, request{Op: "status"})
	if err != nil || !st.Status.KillSwitch {
		t.Errorf("status after the restart: %+v %v; want the kill switch on", st, err)
	}

	// A connect with the directory unreachable (nothing listens there)
	// fails, and the kill switch stays.
	req := connectRequest{DirectoryURL: "http://192.0.2.1:8000", DirectoryKey: testDirKey, Profile: "nodelay", KillSwitch: false}
	if _, err := call(d.socket, request{Op: "connect", Connect: &req}); err == nil {
		t.Fatal("connect with an unreachable directory succeeded")
	}
	l.poke("192.0.2.1:5000")
	l.poke("192.0.2.1:8000")
	if n := leaks(); n != 0 {
		t.Errorf("after a failed connect %d unmarked packets left c0", n)
	}
	if out := run(t, "ip", "netns", "exec", l.client, "nft", "list", "tables"); !strings.Contains(out, platform.KillSwitchTable) {
		t.Errorf("no kill switch table after the failed connect:\n%s", out)
	}

	// Only an explicit disconnect removes it.
	if _, err := call(d.socket, request{Op: "disconnect"}); err != nil {
		t.Fatal(err)
	}
	l.poke("192.0.2.1:5000")
	if leaks() == 0 {
		t.Error("after disconnect nothing leaves c0: the kill switch is still on")
	}
}

// testDirKey is a well-formed directory key that signs nothing here.
const testDirKey = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"

// TestDaemonAcceptErrorsDoNotTearDown: out of file descriptors, Accept on
// the control socket fails (EMFILE); the daemon must wait and go on, not
// disconnect (which would drop the kill switch) and exit.
func TestDaemonAcceptErrorsDoNotTearDown(t *testing.T) {
	l := newLab(t)
	leaks := l.count("unmarked", fmt.Sprintf("meta mark != %#x", fwMark))
	state := filepath.Join(l.dir, "state", "platform.state")
	l.plantKillSwitch(state)
	d := l.startDaemon(40)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 200 && !strings.Contains(d.log(), "accept failed"); i++ {
		c, err := net.Dial("unix", d.socket)
		if err != nil {
			break
		}
		conns = append(conns, c)
		select {
		case <-d.exited:
			t.Fatalf("the daemon exited after %d connections:\n%s", len(conns), d.log())
		default:
		}
	}
	// The accept error shows in the log (the old code failed silently:
	// it closed the socket and hung in its teardown).
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.log(), "accept failed"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no accept error reported with %d connections open", len(conns))
			break
		}
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	var st *response
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st, err = call(d.socket, request{Op: "status"}); err == nil {
			break
		}
		select {
		case <-d.exited:
			t.Fatalf("the daemon exited after the accept errors:\n%s", d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon does not answer after the accept errors: %v", err)
		}
	}
	if !st.Status.KillSwitch {
		t.Errorf("status after the accept errors: %+v; want the kill switch on", st.Status)
	}
	l.poke("192.0.2.1:5000")
	if n := leaks(); n != 0 {
		t.Errorf("after the accept errors %d unmarked packets left c0", n)
	}
}
