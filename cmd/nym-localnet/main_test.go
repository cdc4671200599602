package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// The hash README.md documents for /1MiB; changing the content is a
// visible change.
const wantBlobSHA256 = "18717c8d4e304db0c1b2cc355f5c89188b07c34595aff01a2b4d7fdcf30ac9d1"

func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(newHTTPHandler())
	defer srv.Close()

	body := get(t, srv.URL+"/")
	if !strings.HasPrefix(body, "hello from the internet; you are 127.0.0.1:") {
		t.Errorf("/ = %q", body)
	}
	page := get(t, srv.URL+"/page")
	total := 0
	for i := range pageObjects {
		if !strings.Contains(page, `src="/obj/`+strconv.Itoa(i)+`"`) {
			t.Errorf("/page does not reference /obj/%d", i)
		}
		total += len(get(t, srv.URL+"/obj/"+strconv.Itoa(i)))
	}
	if total != 500<<10 {
		t.Errorf("/page's objects: %d bytes, want 500 KiB", total)
	}
	blob := get(t, srv.URL+"/1MiB")
	sum := sha256.Sum256([]byte(blob))
	if len(blob) != 1<<20 || hex.EncodeToString(sum[:]) != wantBlobSHA256 || blobSHA256() != wantBlobSHA256 {
		t.Errorf("/1MiB: %d bytes, sha256 %x; want 1 MiB with %s", len(blob), sum, wantBlobSHA256)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

func TestDNSAnswer(t *testing.T) {
	zone := names{}
	for _, v := range []string{"Internet.Test=198.51.100.2", "internet.test.=2001:db8:1::2"} {
		if err := zone.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		typ   dnsmessage.Type
		rcode dnsmessage.RCode
		want  []string
	}{
		{"internet.test.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"198.51.100.2"}},
		{"INTERNET.test.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, []string{"2001:db8:1::2"}},
		{"internet.test.", dnsmessage.TypeMX, dnsmessage.RCodeSuccess, nil},
		{"example.com.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
	} {
		q := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: 4242, RecursionDesired: true},
			Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(tc.name), Type: tc.typ, Class: dnsmessage.ClassINET}},
		}
		query, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := answer(query, zone)
		if err != nil {
			t.Fatalf("%s %v: %v", tc.name, tc.typ, err)
		}
		var m dnsmessage.Message
		if err := m.Unpack(raw); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range m.Answers {
			switch r := a.Body.(type) {
			case *dnsmessage.AResource:
				got = append(got, netip.AddrFrom4(r.A).String())
			case *dnsmessage.AAAAResource:
				got = append(got, netip.AddrFrom16(r.AAAA).String())
			}
		}
		if m.ID != 4242 || !m.Response || m.RCode != tc.rcode || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s %v: id %d rcode %v answers %v; want rcode %v answers %v", tc.name, tc.typ, m.ID, m.RCode, got, tc.rcode, tc.want)
		}
	}
	if _, err := answer([]byte{1, 2, 3}, zone); err == nil {
		t.Error("a garbage query was answered")
	}
}

// TestLocalnetUpDown runs localnet/localnet.sh with a prefix of its own, so
// it cannot collide with a network someone brought up by hand (nym-*).
func TestLocalnetUpDown(t *testing.T) {
	if testing.Short() {
		t.Skip("brings up a whole mixnet in network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, c := range []string{"ip", "curl", "iperf3", "go"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s: %v", c, err)
		}
	}
	script, err := filepath.Abs("../../localnet/localnet.sh")
	if err != nil {
		t.Fatal(err)
	}
	prefix := "lt" + strconv.Itoa(os.Getpid())
	env := append(os.Environ(),
		"LOCALNET_PREFIX="+prefix,
		"LOCALNET_DIR="+t.TempDir(),
		"LOCALNET_BIN="+t.TempDir(),
		"LOCALNET_TIMEOUT=600",
	)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	down := func() {
		if out, err := run(script, "down"); err != nil {
			t.Errorf("localnet down: %v\n%s", err, out)
		}
	}
	t.Cleanup(down) // also after a failed up or a t.Fatal below

	if out, err := run(script, "up"); err != nil {
		t.Fatalf("localnet up: %v\n%s", err, out)
	}
	client := prefix + "-client"
	health, err := run("ip", "netns", "exec", client, "curl", "-sf", "http://192.0.2.10:8000/api/v1/health")
	if err != nil || !strings.Contains(health, `"status":"ok"`) || strings.Contains(health, "routable") {
		t.Errorf("directory health from the client: %v %s; want a routable topology", err, health)
	}
	if out, err := run("ip", "netns", "exec", prefix+"-exit", "curl", "-sf", "http://198.51.100.2/"); err != nil ||
		!strings.Contains(out, "you are 198.51.100.1:") {
		t.Errorf("the internet from the exit: %v %q", err, out)
	}
	if out, err := run("ip", "netns", "exec", client, "curl", "-s", "--max-time", "3", "http://198.51.100.2/"); err == nil {
		t.Errorf("the client reached the internet without the VPN: %q", out)
	}
	if out, _ := run("ip", "-n", client, "route", "get", "198.51.100.2"); !strings.Contains(out, "unreachable") {
		t.Errorf("the client has a route to the internet: %s", out)
	}

	down()
	out, err := run("ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, prefix+"-") {
			t.Errorf("namespace left after down: %s", line)
		}
	}
	if _, err := os.Stat("/etc/netns/" + client); !os.IsNotExist(err) {
		t.Errorf("/etc/netns/%s left after down (%v)", client, err)
	}
}
