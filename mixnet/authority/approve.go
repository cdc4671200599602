package authority

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/nym-go/nym/internal/keyfile"
	"github.com/nym-go/nym/mixnet/directory"
)

// ApprovalsFile is the name, in the data dir, of the operator's admission
// decisions. It is a file of its own rather than a bucket of the state
// database so that `nym-api nodes approve|reject` works while the authority
// runs (bbolt holds its file locked): the command replaces the file
// atomically and the authority rereads it when it changes, at the latest
// at its next probe round.
const ApprovalsFile = "approvals.json"

// maxApprovalsSize bounds the decisions file (about 100 bytes a node).
const maxApprovalsSize = 8 << 20

// Decisions an operator takes on a node.
const (
	DecisionApprove = "approve"
	DecisionReject  = "reject"
)

// Decision is one operator decision on a node.
type Decision struct {
	Decision string    `json:"decision"`
	At       time.Time `json:"at"`
	Note     string    `json:"note,omitempty"`
}

// approvalsDoc is the file's content.
type approvalsDoc struct {
	Nodes map[directory.Key]Decision `json:"nodes"`
}

// LoadDecisions reads the operator's decisions from the data dir; a missing
// file is no decisions.
func LoadDecisions(dataDir string) (map[directory.Key]Decision, error) {
	path := filepath.Join(dataDir, ApprovalsFile)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[directory.Key]Decision{}, nil
	}
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxApprovalsSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxApprovalsSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc approvalsDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Nodes == nil {
		doc.Nodes = map[directory.Key]Decision{}
	}
	for id, d := range doc.Nodes {
		if d.Decision != DecisionApprove && d.Decision != DecisionReject {
			return nil, fmt.Errorf("%s: node %s: decision %q is neither %q nor %q", path, id, d.Decision, DecisionApprove, DecisionReject)
		}
	}
	return doc.Nodes, nil
}

// Decide records decision on the nodes ids in the data dir's decisions
// file, replacing the file atomically (mode 0600). A running authority
// picks it up at its next probe round.
func Decide(dataDir, decision, note string, ids []directory.Key, now time.Time) error {
	if decision != DecisionApprove && decision != DecisionReject {
		return fmt.Errorf("decision %q is neither %q nor %q", decision, DecisionApprove, DecisionReject)
	}
	nodes, err := LoadDecisions(dataDir)
	if err != nil {
		return err
	}
	for _, id := range ids {
		nodes[id] = Decision{Decision: decision, At: now.UTC().Round(0), Note: note}
	}
	data, err := json.MarshalIndent(approvalsDoc{Nodes: nodes}, "", "  ")
	if err != nil {
		return err
	}
	return keyfile.Replace(filepath.Join(dataDir, ApprovalsFile), func(f *os.File) error {
		_, err := f.Write(append(data, '\n'))
		return err
	})
}

// SortedDecisions lists decisions by identity, for display.
func SortedDecisions(m map[directory.Key]Decision) []directory.Key {
	ids := make([]directory.Key, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, k int) bool { return ids[i].String() < ids[k].String() })
	return ids
}

// approvals is the authority's cached view of the decisions file.
type approvals struct {
	dir string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	nodes   map[directory.Key]Decision
}

func newApprovals(dataDir string) *approvals {
	return &approvals{dir: dataDir, nodes: map[directory.Key]Decision{}}
}

// refresh rereads the file if it changed. A file that does not parse keeps
// the previous decisions and is logged: a typo must not admit or drop
// everyone.
func (a *approvals) refresh(log *slog.Logger) {
	fi, err := os.Stat(filepath.Join(a.dir, ApprovalsFile))
	var mod time.Time
	var size int64
	if err == nil {
		mod, size = fi.ModTime(), fi.Size()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if mod.Equal(a.modTime) && size == a.size {
		return
	}
	nodes, err := LoadDecisions(a.dir)
	if err != nil {
		log.Error("keeping the previous admission decisions", "err", err)
		return
	}
	a.nodes, a.modTime, a.size = nodes, mod, size
	log.Info("loaded admission decisions", "nodes", len(nodes))
}

func (a *approvals) decision(id directory.Key) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nodes[id].Decision
}

func (a *approvals) approved(id directory.Key) bool { return a.decision(id) == DecisionApprove }
func (a *approvals) rejected(id directory.Key) bool { return a.decision(id) == DecisionReject }
