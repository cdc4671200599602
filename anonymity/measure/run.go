package measure

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/node"
)

// Measure runs one mode: the network, the tunnels and the workloads in a
// subtest of t named after the mode (so that everything it started has
// stopped, and every trace is flushed, when it returns), then the analyses
// on the traces. Every node records into a trace file of its own (its
// trace_file option) and the clients into one more, all in a directory of
// t's. Fast mode's row takes its sender entropy from the entry as a relay
// (anonymity.RelayEntropy: it has no mix layer), and has no cover.
func Measure(t *testing.T, o Options) (Row, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Row{}, err
	}
	start := time.Now()
	r, records, err := collect(t, o)
	if err != nil {
		return Row{}, err
	}
	owners, err := r.owners(records)
	if err != nil {
		return Row{}, err
	}
	users := make(map[anonymity.NodeID]bool)
	for _, id := range r.clients {
		users[id] = true
	}
	row, err := Analyse(o.name(), records, owners, users)
	if err != nil {
		return row, err
	}
	if o.Fast {
		row.Entropy = anonymity.RelayEntropy(anonymity.Events(records), wgCarries)
	}
	var flows, failed int
	for _, f := range r.flows {
		flows += f.Flows
		failed += f.Failed
	}
	if failed > 0 {
		row.Note = fmt.Sprintf("%d of %d flows failed", failed, flows)
	}
	if row.Clients != o.Clients {
		return row, fmt.Errorf("measure: the gateway's traces show %d of the run's %d clients", row.Clients, o.Clients)
	}
	o.Log("%s: analysed after %v", o.name(), since(start))
	return row, nil
}

// collect runs one mode (o with its defaults) in a subtest of t and
// returns what it saw and the merged records of its trace files.
func collect(t *testing.T, o Options) (run, []anonymity.Record, error) {
	dir := t.TempDir()
	var r run
	var nodes atomic.Int32
	start := time.Now()
	ok := t.Run(o.name(), func(t *testing.T) {
		clients, err := anonymity.OpenRecorder(filepath.Join(dir, "clients.trace"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := clients.Close(); err != nil {
				t.Error(err)
			}
		})
		if o.Fast {
			r = fastNetwork(t, o, dir, clients)
			return
		}
		edit := func(to *testnet.Options) {
			to.EditNode = func(c *node.Config) {
				c.TraceFile = filepath.Join(dir, fmt.Sprintf("node%d.trace", nodes.Add(1)))
			}
		}
		r = network(t, o, edit, func(int) client.Config {
			return client.Config{Logger: quiet(), Trace: clients}
		})
	})
	if !ok {
		return r, nil, fmt.Errorf("measure: the %s run failed", o.name())
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.trace"))
	if err != nil {
		return r, nil, err
	}
	var records []anonymity.Record
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return r, nil, err
		}
		recs, err := anonymity.ReadTrace(f)
		f.Close()
		if err != nil {
			return r, nil, fmt.Errorf("measure: %s: %w", filepath.Base(name), err)
		}
		records = append(records, recs...)
	}
	o.Log("%s: %d records in %d trace files after %v", o.name(), len(records), len(files), since(start))
	return r, records, nil
}

// owners maps each exit-side flow the traces show to the client that
// opened it: the flow's endpoint is a port of that client's (flowPort).
// The clients are named as the gateway names them (anonymity.IDOf of
// their identity key); a trace that names none of them is an error, not
// a table of zeros.
func (r run) owners(records []anonymity.Record) (map[anonymity.NodeID]anonymity.NodeID, error) {
	ids := make(map[anonymity.NodeID]bool)
	for _, rec := range records {
		if rec.Role == anonymity.RoleGateway && rec.PeerRole == anonymity.RoleClient {
			ids[rec.Peer] = true
		}
	}
	byEndpoint := make(map[anonymity.NodeID]anonymity.NodeID)
	for i, id := range r.clients {
		if !ids[id] {
			return nil, fmt.Errorf("measure: client %d (trace id %d) is not on any gateway's client links in the traces", i, id)
		}
		for j := range r.flows[i].Flows {
			byEndpoint[anonymity.EndpointID(netip.AddrPortFrom(ServerAddr, flowPort(i, j)))] = id
		}
	}
	owners := make(map[anonymity.NodeID]anonymity.NodeID)
	for _, rec := range records {
		if rec.Role != anonymity.RoleExit {
			continue
		}
		if id, ok := byEndpoint[rec.Peer]; ok {
			owners[rec.Peer] = id
		}
	}
	if len(owners) == 0 && len(byEndpoint) > 0 {
		return nil, errNoFlows
	}
	return owners, nil
}
