package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// snapshot is what localnet/bench.sh recorded at one instant: the wall
// clock, each process's CPU time, each node's /metrics and the client's
// status. A directory holds one:
//
//	time            seconds since the epoch, fractional
//	hz              clock ticks per second (getconf CLK_TCK)
//	cpu             "ROLE UTIME STIME" lines, in ticks, from /proc/PID/stat
//	metrics-ROLE    the node's Prometheus text exposition
//	status.json     `nymvpn status --json`
//
// (bench.sh also records the client's LAN counters there, for its own table.)
type snapshot struct {
	time    float64
	cpu     map[string]float64 // role → CPU seconds
	metrics map[string]map[string]float64
	vpn     vpnCounters
}

// vpnCounters are the fields of the daemon's status we use.
type vpnCounters struct {
	BytesUp, BytesDown     float64
	PacketsUp, PacketsDown float64
	SURBsSent, SURBsUsed   float64
	BundlesUp              float64 // DataUps, by kind below
	BundlesUpSURBsOnly     float64
	BundlesUpWithSURBs     float64
	SlotsReal, SlotsCover  float64 // the mixnet client's packets
	BundlesDown            float64 // replies with data
}

func readSnapshot(dir string) (snapshot, error) {
	s := snapshot{cpu: map[string]float64{}, metrics: map[string]map[string]float64{}}
	var err error
	if s.time, err = readFloat(filepath.Join(dir, "time")); err != nil {
		return s, err
	}
	hz, err := readFloat(filepath.Join(dir, "hz"))
	if err != nil {
		return s, err
	}
	if hz <= 0 {
		return s, fmt.Errorf("%s: clock ticks %v", dir, hz)
	}
	if err := readCPU(filepath.Join(dir, "cpu"), hz, s.cpu); err != nil {
		return s, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "metrics-*"))
	if err != nil {
		return s, err
	}
	for _, f := range files {
		m, err := readMetrics(f)
		if err != nil {
			return s, err
		}
		s.metrics[strings.TrimPrefix(filepath.Base(f), "metrics-")] = m
	}
	if b, err := os.ReadFile(filepath.Join(dir, "status.json")); err == nil {
		var st struct {
			Stats *vpnCounters `json:"stats"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return s, fmt.Errorf("%s: status: %w", dir, err)
		}
		if st.Stats != nil {
			s.vpn = *st.Stats
		}
	}
	return s, nil
}

func readFloat(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// readCPU reads "ROLE UTIME STIME" lines into CPU seconds per role.
func readCPU(path string, hz float64, into map[string]float64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var role string
		var u, s float64
		if _, err := fmt.Sscan(l, &role, &u, &s); err != nil {
			return fmt.Errorf("%s: %q: %w", path, l, err)
		}
		into[role] = (u + s) / hz
	}
	return nil
}

// readMetrics sums each metric family over its label sets: the counters we
// use are totals split by reason or direction.
func readMetrics(path string) (map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]float64{}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				out[name] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] += m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				out[name] += m.GetUntyped().GetValue()
			}
		}
	}
	return out, nil
}

// delta is what a counter of role moved between a and b.
func delta(a, b snapshot, role, metric string) float64 {
	return b.metrics[role][metric] - a.metrics[role][metric]
}
