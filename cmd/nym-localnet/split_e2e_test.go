package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The split tunnel's far server: an address off the client's link, reached
// by a default route through the directory host (which holds it), so that
// only a packet routed by the main table's default route gets there.
const (
	e2eFar4     = "203.0.113.80"
	e2eFarRoute = "192.0.2.10" // the directory host
	e2eFwMark   = "0x6e796d"   // nymvpn's fwMark
)

// TestSplitTunnel: with the fast tunnel up, `nymvpn exclude -- curl`
// reaches a server by the uplink (the server sees the client's uplink
// address) and runs as the sudo user; a plain curl goes through the exit;
// nothing else gets out by the uplink (a plain curl to the far server, one
// bound to the uplink, a ping carrying the daemon's mark), counted where
// the uplink's packets arrive; a user can neither run `nymvpn exclude` nor
// write itself into the group; status lists the excluded program, and
// disconnect moves it out and removes the group.
func TestSplitTunnel(t *testing.T) {
	n := upNet(t, 1)
	mount, err := exec.Command("findmnt", "-n", "-t", "cgroup2", "-o", "TARGET").Output()
	if err != nil || len(mount) == 0 {
		t.Skipf("needs a cgroup2 hierarchy (findmnt: %v)", err)
	}
	n.must("dir", "ip", "addr", "add", e2eFar4+"/32", "dev", "lo")
	n.startBackground("dir", "far-http", filepath.Join(n.state, "log", "far-http.log"),
		filepath.Join(n.bin, "nym-localnet"), "inet", "--http", e2eFar4+":80", "--dns", "")
	n.must("client", "ip", "route", "add", "default", "via", e2eFarRoute)
	// Counts what reaches the far server by the uplink.
	n.nftLoad("dir", `table inet e2e_split {
	counter arrived {}
	chain in {
		type filter hook prerouting priority -500; policy accept;
		iifname "lan0" ip daddr `+e2eFar4+` counter name arrived
	}
}
`)
	arrived := func() int64 {
		out := n.must("dir", "nft", "list", "counter", "inet", "e2e_split", "arrived")
		f := strings.Fields(out[strings.Index(out, "packets")+len("packets"):])
		v, _ := strconv.ParseInt(f[0], 10, 64)
		return v
	}
	// Before the tunnel: the far server answers by the uplink.
	var page string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if page, err = n.in("client", 10*time.Second, "curl", "-sf", "--max-time", "5", "http://"+e2eFar4+"/"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the far server does not answer before the tunnel: %v %q", err, page)
		}
	}
	if !strings.Contains(page, "you are "+e2eClientLAN+":") || arrived() == 0 {
		t.Fatalf("lab broken: %q, %d packets counted", page, arrived())
	}

	n.connect("--mode", "fast")
	nymvpn := filepath.Join(n.bin, "nymvpn")
	fi, err := os.Stat("/run/netns/" + n.ns("client"))
	if err != nil {
		t.Fatal(err)
	}
	group := filepath.Join(strings.TrimSpace(strings.SplitN(string(mount), "\n", 2)[0]),
		"nymvpn-exclude-"+strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10))

	t.Run("excluded curl by the uplink, as the sudo user", func(t *testing.T) {
		before := arrived()
		out, err := n.run(time.Minute, "ip", "netns", "exec", n.ns("client"), "env", "SUDO_UID=65534", "SUDO_GID=65534",
			nymvpn, "exclude", "--", "sh", "-c", "id -u; curl -sf --max-time 20 http://"+e2eFar4+"/")
		if err != nil || !strings.HasPrefix(out, "65534\n") || !strings.Contains(out, "you are "+e2eClientLAN+":") {
			t.Errorf("nymvpn exclude -- curl: %v %q; want uid 65534 and the server seeing %s", err, out, e2eClientLAN)
		}
		if got := arrived(); got <= before {
			t.Errorf("no packet of the excluded curl arrived by the uplink (%d -> %d)", before, got)
		}
	})
	t.Run("plain curl through the exit", func(t *testing.T) {
		page, err := n.in("client", time.Minute, "curl", "-sf", "--max-time", "30", "http://"+e2eInet4+"/")
		if err != nil || !strings.Contains(page, "you are "+e2eExit4+":") {
			t.Errorf("plain curl: %v %q; want the server to see the exit's %s", err, page, e2eExit4)
		}
	})
	t.Run("nothing else by the uplink", func(t *testing.T) {
		before := arrived()
		for _, args := range [][]string{
			{"curl", "-s", "--max-time", "3", "http://" + e2eFar4 + "/"},
			{"curl", "-s", "--max-time", "3", "--interface", "lan0", "http://" + e2eFar4 + "/"},
			{"ping", "-c", "3", "-W", "1", "-m", e2eFwMark, e2eFar4},
		} {
			if out, err := n.in("client", 20*time.Second, args...); err == nil {
				t.Errorf("%v got through: %q", args, out)
			}
		}
		if got := arrived(); got != before {
			t.Errorf("%d packets of programs not excluded arrived by the uplink", got-before)
		}
	})
	t.Run("a user cannot exclude", func(t *testing.T) {
		out, err := n.in("client", time.Minute, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			nymvpn, "exclude", "--", "curl", "-sf", "--max-time", "5", "http://"+e2eFar4+"/")
		if err == nil || !strings.Contains(out, "only root") {
			t.Errorf("uid 65534 ran nymvpn exclude: %v %q", err, out)
		}
		cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"sh", "-c", `echo $$ > "$G/cgroup.procs"`)
		cmd.Env = append(os.Environ(), "G="+group)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "ermission denied") {
			t.Errorf("uid 65534 writing itself into %s: %v %q; want permission denied", group, err, out)
		}
	})
	t.Run("status lists it; disconnect moves it out", func(t *testing.T) {
		n.startBackground("client", "excluded-sleep", filepath.Join(n.state, "log", "excluded-sleep.log"),
			nymvpn, "exclude", "--", "sleep", "600")
		b, err := os.ReadFile(filepath.Join(n.state, "pids", "excluded-sleep"))
		if err != nil {
			t.Fatal(err)
		}
		pid := strings.Fields(string(b))[0]
		var listed string
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			listed, _ = n.vpn("status")
			if strings.Contains(listed, pid+" sleep") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status does not list the excluded sleep (pid %s):\n%s", pid, listed)
			}
		}
		if out, err := n.vpn("disconnect"); err != nil {
			t.Fatalf("disconnect: %v\n%s", err, out)
		}
		if _, err := os.Stat(group); !os.IsNotExist(err) {
			t.Errorf("the group is still there after disconnect: %v", err)
		}
		if cg, err := os.ReadFile("/proc/" + pid + "/cgroup"); err != nil || strings.Contains(string(cg), "nymvpn-exclude") {
			t.Errorf("the excluded sleep after disconnect: %q, %v; want it alive and out of the group", cg, err)
		}
		if rs := n.must("client", "nft", "list", "ruleset"); strings.Contains(rs, "nymvpn_split") {
			t.Errorf("the split table is left after disconnect:\n%s", rs)
		}
	})
}
