// Command rolecost reads the snapshots localnet/bench.sh takes around its
// iperf3 runs and prints what each role of the mixnet costs: CPU
// microseconds per Sphinx packet and per MB carried through the tunnel, and
// from those the capacity of one core in that role. Then, per profile, the
// projected download of one client on a network where every node has a
// 2-core host of its own.
//
// The local network runs every process on the same cores, so its
// end-to-end figure is bound by their sum; each process's own CPU time,
// divided by the traffic it carried, says what a host of its own could do.
//
// Usage: rolecost WINDOW...
//
// A WINDOW directory holds "meta" (lines "key value": label, profile, and
// kind = down, up or idle) and two snapshots, 0 taken before and 1 after
// (see snapshot).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// window is one measured interval: an iperf3 run or an idle wait.
type window struct {
	label, profile, kind string
	a, b                 snapshot
}

func readWindow(dir string) (window, error) {
	w := window{}
	b, err := os.ReadFile(filepath.Join(dir, "meta"))
	if err != nil {
		return w, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, " ")
		switch k {
		case "label":
			w.label = v
		case "profile":
			w.profile = v
		case "kind":
			w.kind = v
		}
	}
	if w.label == "" || w.profile == "" || (w.kind != "down" && w.kind != "up" && w.kind != "idle") {
		return w, fmt.Errorf("%s: meta wants label, profile and kind down, up or idle", dir)
	}
	if w.a, err = readSnapshot(filepath.Join(dir, "0")); err != nil {
		return w, err
	}
	if w.b, err = readSnapshot(filepath.Join(dir, "1")); err != nil {
		return w, err
	}
	if w.b.time <= w.a.time {
		return w, fmt.Errorf("%s: the second snapshot is not later than the first", dir)
	}
	return w, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rolecost WINDOW...")
		os.Exit(2)
	}
	var ws []window
	for _, dir := range os.Args[1:] {
		w, err := readWindow(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rolecost:", err)
			os.Exit(1)
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		if w.kind != "idle" {
			printWindow(os.Stdout, w, idleOf(ws, w.profile))
		}
	}
	printProjection(os.Stdout, ws)
}
