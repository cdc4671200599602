package mixnode

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/mixnet/replay"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// Replay filter files, one per held key, in Config.ReplayDir:
// replay-<rotation>-<first 8 bytes of the binding, hex>.bloom. A node
// restarted while a key is valid loads its filter back, so packets it
// forwarded before the restart are still refused as replays; without the file
// an attacker could replay every packet once after a restart and watch where
// it goes. Tags seen since the last save (at most ReplayFlushInterval's worth,
// unless the node stopped cleanly) are lost in a crash, as in Nym.
const (
	replayPrefix = "replay-"
	replaySuffix = ".bloom"
	// corruptSuffix is appended to a file that could not be loaded: it is
	// kept for inspection rather than deleted, and the next save of the
	// same key starts a fresh file.
	corruptSuffix = ".corrupt"
)

// replayBindingDomain separates our use of the hash from any other.
const replayBindingDomain = "nym-go mixnode replay filter v1\x00"

// replayStore creates, loads, saves and deletes the held keys' filters.
type replayStore struct {
	dir      string // "" keeps filters in memory only
	capacity uint64
	fpRate   float64
	prefault bool // Config.ReplayPrefault
	log      *slog.Logger
	failures prometheus.Counter // saves and deletes that failed
}

// newKey describes a key about to be installed, with its file's name.
func (s *replayStore) newKey(rotation uint64, pub [32]byte, key *sphinx.PrivateKey) *heldKey {
	k := &heldKey{rotation: rotation, public: pub, key: key}
	h := sha256.New()
	h.Write([]byte(replayBindingDomain))
	h.Write(pub[:])
	h.Sum(k.binding[:0])
	if s.dir != "" {
		k.path = filepath.Join(s.dir, fmt.Sprintf("%s%d-%x%s", replayPrefix, rotation, k.binding[:8], replaySuffix))
	}
	return k
}

// open gives k its filter: the one saved in its file if there is a usable
// one, else an empty one. An unusable file is logged and moved aside, and
// the node carries on: refusing to start would turn a corrupt file into an
// outage, while starting empty loses only the replay protection of the
// packets seen before the restart.
func (s *replayStore) open(k *heldKey) error {
	if k.path != "" {
		start := time.Now()
		f, err := replay.Load(k.path, k.binding, s.capacity, s.fpRate)
		switch {
		case err == nil:
			s.log.Info("mixnode: replay filter loaded", "rotation", k.rotation, "file", k.path,
				"tags", f.Inserted(), "took", time.Since(start).Round(time.Millisecond))
			k.replay, k.savedTags = f, f.Inserted()
			return nil
		case errors.Is(err, os.ErrNotExist):
		default:
			aside := k.path + corruptSuffix
			if rerr := os.Rename(k.path, aside); rerr != nil {
				s.log.Error("mixnode: cannot move unusable replay filter file aside", "file", k.path, "err", rerr)
				aside = ""
			}
			s.log.Error("mixnode: replay filter file unusable; starting this key with an empty filter, so packets seen before the restart could be replayed once",
				"rotation", k.rotation, "err", err, "moved_to", aside)
		}
	}
	f, err := replay.New(s.capacity, s.fpRate)
	if err != nil {
		return err
	}
	k.replay = f
	return nil
}

// save writes k's filter to its file, unless k has been dropped meanwhile
// (its file must then stay deleted) or no tag was added since the last load
// or save: writing a large filter costs a second or so of CPU and I/O, which
// an idle node need not pay every interval.
func (s *replayStore) save(k *heldKey) {
	if k.path == "" {
		return
	}
	k.fileMu.Lock()
	defer k.fileMu.Unlock()
	// Read before saving: the file then holds at least this many tags.
	tags := k.replay.Inserted()
	if k.dropped || tags == k.savedTags {
		return
	}
	start := time.Now()
	if err := k.replay.Save(k.path, k.binding); err != nil {
		s.failures.Inc()
		s.log.Error("mixnode: saving replay filter failed", "rotation", k.rotation, "err", err)
		return
	}
	k.savedTags = tags
	s.log.Debug("mixnode: replay filter saved", "rotation", k.rotation, "tags", k.replay.Inserted(),
		"took", time.Since(start).Round(time.Millisecond))
}

// drop deletes the file of a key that is no longer held: its rotation has
// ended, so no packet under it will be accepted again.
func (s *replayStore) drop(k *heldKey) {
	if k.path == "" {
		return
	}
	k.fileMu.Lock()
	defer k.fileMu.Unlock()
	k.dropped = true
	if err := os.Remove(k.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.failures.Inc()
		s.log.Error("mixnode: deleting replay filter file failed", "rotation", k.rotation, "err", err)
	}
}

// prune deletes filter files that belong to no key in held, and with temps
// also temporary files a crash left behind (only safe when no save can be
// running). Corrupt files moved aside are left for the operator.
func (s *replayStore) prune(held *keySet, temps bool) {
	if s.dir == "" {
		return
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Warn("mixnode: listing replay filter files", "err", err)
		return
	}
	keep := map[string]bool{}
	for _, k := range held.byParity {
		if k != nil {
			keep[filepath.Base(k.path)] = true
		}
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, replayPrefix) || keep[name] {
			continue
		}
		stale := strings.HasSuffix(name, replaySuffix)
		if temps && strings.Contains(name, replaySuffix+replay.TempInfix) {
			stale = true
		}
		if !stale {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("mixnode: deleting stale replay filter file", "file", name, "err", err)
			continue
		}
		s.log.Info("mixnode: deleted replay filter file of a key no longer held", "file", name)
	}
}

// saveAll saves the filters of the keys held now.
func (s *replayStore) saveAll(ring *keyRing) {
	set := ring.current.Load()
	if set == nil || s.dir == "" {
		return
	}
	for _, k := range set.byParity {
		if k != nil {
			s.save(k)
		}
	}
}
