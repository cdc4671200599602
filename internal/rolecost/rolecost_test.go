package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeSnapshot lays out one snapshot as bench.sh does.
func writeSnapshot(t *testing.T, dir string, time string, cpu string, metrics map[string]string, status string) {
	t.Helper()
	files := map[string]string{"time": time, "hz": "100\n", "cpu": cpu, "status.json": status}
	for role, m := range metrics {
		files["metrics-"+role] = m
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const entryMetrics = `# TYPE nym_gateway_packets_forwarded_total counter
nym_gateway_packets_forwarded_total %F
# TYPE nym_gateway_delivered_live_total counter
nym_gateway_delivered_live_total %D
# TYPE nym_gateway_acks_sent_total counter
nym_gateway_acks_sent_total %A
# TYPE nym_mixnode_packets_received_total counter
nym_mixnode_packets_received_total %D
# TYPE nym_gateway_packets_dropped_total counter
nym_gateway_packets_dropped_total{reason="closed"} 1
nym_gateway_packets_dropped_total{reason="no_ticket"} 2
`

const mixMetrics = `# TYPE nym_mixnode_packets_received_total counter
nym_mixnode_packets_received_total %R
`

func fill(s string, kv ...string) string { return strings.NewReplacer(kv...).Replace(s) }

// TestWindowCost reads a download window as bench.sh writes it and checks
// each role's figures against the arithmetic done by hand.
func TestWindowCost(t *testing.T) {
	dir := t.TempDir()
	meta := "label (a) Nym defaults\nprofile default\nkind down\n"
	if err := os.WriteFile(filepath.Join(dir, "meta"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	writeSnapshot(t, filepath.Join(dir, "0"), "1000.0\n",
		"client 100 50\nentry 10 10\nmix1 0 0\nexit 5 5\n",
		map[string]string{
			"entry": fill(entryMetrics, "%F", "100", "%D", "200", "%A", "10"),
			"mix1":  fill(mixMetrics, "%R", "1000"),
			"exit":  fill(mixMetrics, "%R", "0"),
		},
		`{"state":"connected","stats":{"BytesUp":1000000,"BytesDown":2000000}}`)
	// 10 s later: the client used 2 s of CPU, entry 1 s, mix1 0.5 s, exit 1.5 s;
	// the tunnel carried 1 MB up and 9 MB down.
	writeSnapshot(t, filepath.Join(dir, "1"), "1010.0\n",
		"client 200 150\nentry 60 60\nmix1 25 25\nexit 80 80\n",
		map[string]string{
			"entry": fill(entryMetrics, "%F", "1100", "%D", "4200", "%A", "510"),
			"mix1":  fill(mixMetrics, "%R", "6000"),
			"exit":  fill(mixMetrics, "%R", "3000"),
		},
		`{"state":"connected","stats":{"BytesUp":2000000,"BytesDown":11000000}}`)
	w, err := readWindow(dir)
	if err != nil {
		t.Fatal(err)
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	client, ok := roleCost(w, nil, "client")
	if !ok {
		t.Fatal("no client cost")
	}
	// The client's packets are its entry's client side: 1000 forwarded, 4000 delivered.
	near("client packets", client.packets, 5000)
	near("client µs/packet", client.usPerPacket(), 2e6/5000)
	near("client MB", client.mb, 10)
	// The data packets are the exit's: 3000 in 10 MB, at 400 µs each.
	near("client µs/MB", client.usPerMB(), 400*3000/10)
	near("client core Mbit/s", client.coreMbps(), 8e6/120000)
	near("client share", client.share(), 0.2)
	entry, _ := roleCost(w, nil, "entry")
	// Unwrapped 4000, forwarded 1000, acks 500.
	near("entry packets", entry.packets, 5500)
	mix, _ := roleCost(w, nil, "mix1")
	near("mix1 µs/packet", mix.usPerPacket(), 0.5e6/5000)
	if _, ok := roleCost(w, nil, "mix2"); ok {
		t.Error("mix2 has a cost though bench.sh recorded none")
	}
	mean, n := mixMean(w, nil)
	if n != 1 || mean.cpu != mix.cpu {
		t.Errorf("mix mean over %d mixes, cpu %v; want 1, %v", n, mean.cpu, mix.cpu)
	}

	// An idle tunnel that costs the client 0.1 s of CPU per second and
	// 100 packets/s leaves 1.9 of 2 cores to the data.
	idleDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(idleDir, "meta"), []byte("label (a) Nym defaults\nprofile default\nkind idle\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeSnapshot(t, filepath.Join(idleDir, "0"), "2000\n", "client 0 0\n",
		map[string]string{"entry": fill(entryMetrics, "%F", "0", "%D", "0", "%A", "0")}, "{}")
	writeSnapshot(t, filepath.Join(idleDir, "1"), "2020\n", "client 100 100\n",
		map[string]string{"entry": fill(entryMetrics, "%F", "1000", "%D", "1000", "%A", "0")}, "{}")
	idle, err := readWindow(idleDir)
	if err != nil {
		t.Fatal(err)
	}
	client, _ = roleCost(w, &idle, "client")
	near("client idle", client.idle, 0.1)
	near("client idle packets/s", client.idlePPS, 100)
	near("client on 2 cores, Mbit/s", client.hostMbps(2), (2-0.1)*8e6/120000)
}

// TestProtocolCap checks the cap at Nym's λ = 50/s against the issue's
// estimate (about 3 Mbit/s), and that a profile without a Poisson stream
// has none.
func TestProtocolCap(t *testing.T) {
	mbps, lambda, surbs, payload, ok := protocolCap("default")
	if !ok || lambda != 50 || surbs < 1 || payload < 1500 {
		t.Fatalf("protocolCap(default) = %v, λ %v, %d SURBs, %d B, %v", mbps, lambda, surbs, payload, ok)
	}
	if mbps < 1 || mbps > 4 {
		t.Errorf("cap at Nym's defaults %.2f Mbit/s, want about 3", mbps)
	}
	if _, _, _, _, ok := protocolCap("nodelay"); ok {
		t.Error("nodelay has no Poisson stream, yet a cap")
	}
}

// TestSlotsLine: the client's packets per second by what they carried, from
// the status counters of a window's two snapshots; nothing without them.
func TestSlotsLine(t *testing.T) {
	w := window{}
	w.a.vpn = vpnCounters{SlotsReal: 100, SlotsCover: 50, BundlesUp: 90, BundlesUpSURBsOnly: 10, BundlesUpWithSURBs: 5, SURBsSent: 40, SURBsUsed: 30, BundlesDown: 30}
	w.b.vpn = vpnCounters{SlotsReal: 1100, SlotsCover: 250, BundlesUp: 1090, BundlesUpSURBsOnly: 110, BundlesUpWithSURBs: 25, SURBsSent: 340, SURBsUsed: 330, BundlesDown: 320}
	var b strings.Builder
	printSlots(&b, w, 10)
	want := "  client packets/s: 100.0 real, 20.0 cover; DataUps/s: 88.0 data alone, 2.0 data and SURBs, 10.0 SURBs alone; SURBs given 30.0/s, replies 30.0/s (29.0 with data)\n"
	if b.String() != want {
		t.Errorf("got  %q\nwant %q", b.String(), want)
	}
	b.Reset()
	printSlots(&b, window{}, 10)
	if b.Len() != 0 {
		t.Errorf("a status without the counters printed %q", b.String())
	}
}
