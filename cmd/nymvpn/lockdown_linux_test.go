package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nym-go/nym/platform"
)

// poker pokes dst from the client namespace without pause until stopped:
// whatever gap a daemon's stop, crash or start opens, some of its packets
// fall into it.
func (l *lab) poker(dst string) (stop func() int) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var n int
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			l.poke(dst)
			n++
		}
	})
	return func() int { close(done); wg.Wait(); return n }
}

func mustCall(t *testing.T, socket string, req request) *response {
	t.Helper()
	resp, err := call(socket, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Op, err)
	}
	return resp
}

func (d *daemonProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the daemon did not exit on %v", sig)
	}
}

// TestLockdown: with `set lockdown on`, 0 packets leave the client's uplink
// while the daemon is up and disconnected, after disconnect, while it is
// stopped, after kill -9, while a fresh daemon takes over the killed one's
// state, and after a "reboot" (the table deleted) once the boot command ran
// and a daemon started; `set lockdown off` lets traffic out again. A poker
// sends throughout, so the gaps between daemons are covered too.
func TestLockdown(t *testing.T) {
	l := newLab(t)
	out := l.count("leaving", "") // every packet leaving c0
	l.poke("192.0.2.1:5000")
	if out() == 0 {
		t.Fatal("the counter did not count packets leaving c0")
	}
	d := l.startDaemon(0)
	resp := mustCall(t, d.socket, request{Op: "set", Set: &setRequest{Key: "lockdown", Value: "on"}})
	if resp.Settings == nil || !resp.Settings.Lockdown {
		t.Fatalf("set lockdown on answered %+v", resp.Settings)
	}
	st := mustCall(t, d.socket, request{Op: "status"}).Status
	if !st.Lockdown || !st.KillSwitch || st.State != stateDisconnected {
		t.Fatalf("status with lockdown on: %+v", st)
	}
	l.resetCounters()
	stopPoking := l.poker("192.0.2.1:5000")
	check := func(when string) {
		t.Helper()
		l.poke("192.0.2.1:5000")
		if n := out(); n != 0 {
			t.Fatalf("%s: %d packets left c0", when, n)
		}
	}
	check("lockdown on, disconnected")

	mustCall(t, d.socket, request{Op: "disconnect"})
	check("after disconnect")

	d.stop(t, syscall.SIGTERM)
	check("daemon stopped")

	d = l.startDaemon(0)
	check("daemon restarted")
	if st := mustCall(t, d.socket, request{Op: "status"}).Status; !st.Lockdown || !st.KillSwitch {
		t.Fatalf("status after the restart: %+v", st)
	}

	d.stop(t, syscall.SIGKILL)
	check("after kill -9")
	d = l.startDaemon(0)
	check("a fresh daemon after kill -9")

	// A connect under lockdown whose directory does not answer: the
	// daemon's marked SYNs to it may leave, nothing else; it fails and
	// the lockdown holds.
	l.resetCounters()
	marked := l.count("marked", fmt.Sprintf("meta mark %#x", fwMark))
	req := connectRequest{DirectoryURL: "http://192.0.2.1:8000", DirectoryKey: testDirKey, Profile: "nodelay", KillSwitch: false}
	if _, err := call(d.socket, request{Op: "connect", Connect: &req}); err == nil || !strings.Contains(err.Error(), "lockdown") {
		t.Fatalf("connect to a silent directory under lockdown: %v; want a failure naming the lockdown", err)
	}
	if n, m := out(), marked(); n != m || m == 0 {
		t.Fatalf("connect under lockdown: %d packets left c0, %d of them the daemon's marked ones to the directory; want only those (and some)", n, m)
	}
	l.resetCounters()
	check("after a failed connect")

	// A reboot: the kernel forgets the table; the state and settings
	// files stay. Proven to open the door (the counter counts again)...
	stopPoking()
	d.stop(t, syscall.SIGKILL)
	run(t, "ip", "netns", "exec", l.client, "nft", "delete", "table", "inet", platform.KillSwitchTable)
	l.poke("192.0.2.1:5000")
	if out() == 0 {
		t.Fatal("with the table deleted nothing left c0: the reboot case proves nothing")
	}
	// ...which the boot command closes before the daemon starts.
	l.in(l.client, func() error {
		on, err := applyBootLockdown(d.state)
		if err == nil && !on {
			t.Error("the boot command did not apply the lockdown")
		}
		return err
	})
	l.resetCounters()
	stopPoking = l.poker("192.0.2.1:5000")
	check("after the boot command")
	d = l.startDaemon(0)
	check("the daemon after the boot command")
	if n := stopPoking(); n == 0 {
		t.Fatal("the poker never poked")
	}
	check("throughout")

	mustCall(t, d.socket, request{Op: "set", Set: &setRequest{Key: "lockdown", Value: "off"}})
	l.poke("192.0.2.1:5000")
	if out() == 0 {
		t.Error("after set lockdown off nothing leaves c0")
	}
	if st := mustCall(t, d.socket, request{Op: "status"}).Status; st.Lockdown || st.KillSwitch {
		t.Errorf("status after lockdown off: %+v", st)
	}
	// The boot command now leaves the network alone.
	l.in(l.client, func() error {
		on, err := applyBootLockdown(d.state)
		if on {
			t.Error("the boot command applied a lockdown that is off")
		}
		return err
	})
}

// TestEvents: `nymvpn events` streams the state now, then each change as
// the daemon makes it: a connect to a silent directory is connecting, then
// an error with the reason, and a disconnect is disconnected.
func TestEvents(t *testing.T) {
	l := newLab(t)
	d := l.startDaemon(0)
	next := l.events(d)
	if e := next(); e.State != stateDisconnected {
		t.Fatalf("first event %+v; want the state now, disconnected", e)
	}
	req := connectRequest{DirectoryURL: "http://192.0.2.1:8000", DirectoryKey: testDirKey, Profile: "nodelay", Mode: modeFast}
	if _, err := call(d.socket, request{Op: "connect", Connect: &req}); err == nil {
		t.Fatal("connect to a silent directory succeeded")
	}
	if e := next(); e.State != stateConnecting || e.Mode != modeFast {
		t.Fatalf("event %+v; want connecting, fast", e)
	}
	if e := next(); e.State != stateError || !strings.Contains(e.Error, "topology") {
		t.Fatalf("event %+v; want an error naming the topology", e)
	}
	mustCall(t, d.socket, request{Op: "disconnect"})
	if e := next(); e.State != stateDisconnected {
		t.Fatalf("event %+v; want disconnected", e)
	}
	// status --json carries the settings in force.
	mustCall(t, d.socket, request{Op: "set", Set: &setRequest{Key: "allow-lan", Value: "on"}})
	st := mustCall(t, d.socket, request{Op: "status"}).Status
	b, _ := json.Marshal(st)
	for _, k := range []string{`"lockdown":false`, `"allow_lan":true`, `"state":"disconnected"`, `"kill_switch":`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("status JSON %s lacks %s", b, k)
		}
	}
}

// TestLockdownAllowLAN: `set allow-lan on` under lockdown lets the uplink's
// private subnet out at once, and nothing else; it survives a restart of
// the daemon (the settings file); `set allow-lan off` closes it again.
func TestLockdownAllowLAN(t *testing.T) {
	l := newLab(t)
	// A private subnet on the uplink beside the documentation one, which
	// is not a LAN to allow-LAN.
	run(t, "ip", "-n", l.client, "addr", "add", "10.77.0.2/24", "dev", "c0")
	run(t, "ip", "-n", l.world, "addr", "add", "10.77.0.1/24", "dev", "w0")
	lan := l.count("lan", "ip daddr 10.77.0.0/24")
	other := l.count("other", "ip daddr != 10.77.0.0/24")
	l.poke("10.77.0.1:5000")
	l.poke("192.0.2.1:5000")
	if lan() == 0 || other() == 0 {
		t.Fatal("the counters did not count")
	}
	d := l.startDaemon(0)
	mustCall(t, d.socket, request{Op: "set", Set: &setRequest{Key: "lockdown", Value: "on"}})
	l.resetCounters()
	if l.poke("10.77.0.1:5000"); lan() != 0 {
		t.Fatal("lockdown without allow-LAN let the LAN out")
	}
	mustCall(t, d.socket, request{Op: "set", Set: &setRequest{Key: "allow-lan", Value: "on"}})
	for _, restarted := range []bool{false, true} {
		if restarted {
			d.stop(t, syscall.SIGTERM)
			d = l.startDaemon(0)
		}
		l.resetCounters()
		l.poke("10.77.0.1:5000")
		l.poke("192.0.2.1:5000")
		if n, o := lan(), other(); n == 0 || o != 0 {
			t.Fatalf("lockdown with allow-LAN (restarted: %v): %d packets to the LAN, %d elsewhere; want some and 0", restarted, n, o)
		}
		if st := mustCall(t, d.socket, request{Op: "status"}).Status; !st.AllowLAN || !st.Lockdown {
			t.Fatalf("status: %+v", st)
		}
	}
	mustCall(t, d.socket, request{Op: "set", Set: &setRequest{Key: "allow-lan", Value: "off"}})
	l.resetCounters()
	l.poke("10.77.0.1:5000")
	if n := lan() + other(); n != 0 {
		t.Fatalf("allow-LAN off under lockdown: %d packets left c0", n)
	}
}

// TestAutoConnectRetries: a daemon whose settings say auto-connect
// connects at start with the remembered request, and tries again while
// that fails (the network may not be up at boot), until the user
// disconnects.
func TestAutoConnectRetries(t *testing.T) {
	l := newLab(t)
	req := connectRequest{DirectoryURL: "http://192.0.2.1:8000", DirectoryKey: testDirKey, Profile: "nodelay", Mode: modeFast, dnsText: []string{"192.0.2.53"}}
	if err := req.check(); err != nil {
		t.Fatal(err)
	}
	s := settings{AutoConnect: true, Connect: saveConnect(req)}
	state := filepath.Join(l.dir, "state", "platform.state")
	if err := s.save(settingsPath(state)); err != nil {
		t.Fatal(err)
	}
	d := l.startDaemon(0)
	ev := l.events(d)
	var attempts, failures int
	for attempts < 2 || failures < 2 {
		switch e := ev(); e.State {
		case stateConnecting:
			if e.Mode != modeFast {
				t.Fatalf("auto-connect in mode %q, want the remembered fast", e.Mode)
			}
			attempts++
		case stateError:
			failures++
		}
	}
	mustCall(t, d.socket, request{Op: "disconnect"})
	for deadline := time.Now().Add(time.Minute); !strings.Contains(d.log(), "auto-connect failed"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no auto-connect failure in the log")
		}
	}
	t.Logf("%d attempts, %d failures before the disconnect", attempts, failures)
}

// events subscribes to d's events; each call of the function returned
// waits for the next one.
func (l *lab) events(d *daemonProc) func() event {
	t := l.t
	conn, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := json.NewEncoder(conn).Encode(request{Op: "events"}); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(conn)
	return func() event {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
		if !lines.Scan() {
			t.Fatalf("events ended: %v", lines.Err())
		}
		var e event
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
			t.Fatalf("event %q: %v", lines.Text(), err)
		}
		return e
	}
}
