package mixnode

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/replay"
)

// withReplayDir persists filters in dir; the small test capacity of
// startMixer keeps the files at a few hundred KiB.
func withReplayDir(dir string) func(*Config) {
	return func(c *Config) { c.ReplayDir = dir }
}

// replayPath is the file the Mixer keeps for rotation's key.
func replayPath(h *harness, k RotationKey) string {
	return h.keys.store.newKey(k.Rotation, k.Key.PublicKey(), k.Key).path
}

// TestReplayAcrossRestart is the attack the files exist for: a packet forwarded
// before a restart is replayed after it, under the same key.
func TestReplayAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	mix, next := newNode(t), newNode(t)
	key := RotationKey{Rotation: 4, Key: mix.key}

	h := startMixer(t, withReplayDir(dir))
	h.mustSetKeys(t, key)
	pkt := packetVia(t, mix.key, 0, next, []byte("once"))
	replayed := bytes.Clone(pkt) // Submit unwraps in place
	h.Submit(pkt, false)
	openAt(t, next, h.next(t), []byte("once"))
	if got := h.metric(t, "nym_mixnode_replay_tags", "even"); got != 1 {
		t.Errorf("replay_tags{even} = %v before the restart, want 1", got)
	}
	h.shutdown(t) // the long flush interval has not passed: this is the shutdown save
	path := replayPath(h, key)
	if st, err := os.Stat(path); err != nil {
		t.Fatalf("no replay file after shutdown: %v", err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("replay file mode %v, want 0600", st.Mode().Perm())
	}

	h2 := startMixer(t, withReplayDir(dir))
	h2.mustSetKeys(t, key)
	h2.Submit(replayed, false)
	waitFor(t, "replay drop after restart", func() bool { return h2.dropped(t, "replay") == 1 })

	// A new packet still goes through, and the loaded count carries on.
	h2.Submit(packetVia(t, mix.key, 0, next, []byte("twice")), false)
	openAt(t, next, h2.next(t), []byte("twice"))
	if len(h2.out) != 0 {
		t.Error("the replayed packet was forwarded after the restart")
	}
	if got := h2.metric(t, "nym_mixnode_replay_tags", "even"); got != 2 {
		t.Errorf("replay_tags{even} = %v after the restart, want 2", got)
	}
	if got := h2.metric(t, "nym_mixnode_replay_expected_fp_rate", "even"); !(got > 0 && got < 1e-9) {
		t.Errorf("replay_expected_fp_rate{even} = %v with 2 tags, want tiny but positive", got)
	}
	if got := h2.metric(t, "nym_mixnode_replay_tags", "odd"); got != 0 {
		t.Errorf("replay_tags{odd} = %v with no odd key, want 0", got)
	}
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReplayFileCorrupt checks that a damaged file costs its protection, not
// the node: the mixer starts with an empty filter, logs, and keeps the file.
func TestReplayFileCorrupt(t *testing.T) {
	dir := t.TempDir()
	mix, next := newNode(t), newNode(t)
	key := RotationKey{Rotation: 5, Key: mix.key}

	h := startMixer(t, withReplayDir(dir))
	h.mustSetKeys(t, key)
	pkt := packetVia(t, mix.key, 0, next, []byte("x"))
	replayed := bytes.Clone(pkt)
	h.Submit(pkt, true)
	h.next(t)
	h.shutdown(t)

	path := replayPath(h, key)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	h2 := startMixer(t, func(c *Config) {
		c.ReplayDir = dir
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	h2.mustSetKeys(t, key)
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "checksum") {
		t.Errorf("corrupt file not logged as an error; log:\n%s", logs.String())
	}
	aside, err := os.ReadFile(path + corruptSuffix)
	if err != nil || !bytes.Equal(aside, data) {
		t.Errorf("corrupt file not kept aside intact: %v", err)
	}
	// The filter is empty: the old packet passes, which is the documented
	// cost of a lost file.
	h2.Submit(replayed, true)
	h2.next(t)
	h2.shutdown(t)
	if _, err := replay.Load(path, h2.keys.store.newKey(5, mix.key.PublicKey(), mix.key).binding, 100_000, replay.DefaultFPRate); err != nil {
		t.Errorf("a fresh file was not saved after the corrupt one: %v", err)
	}
}

// TestReplayFlushAndDrop checks the periodic save and that a dropped key's
// file goes with it.
func TestReplayFlushAndDrop(t *testing.T) {
	dir := t.TempDir()
	mix, next := newNode(t), newNode(t)
	k4 := RotationKey{Rotation: 4, Key: mix.key}
	k5 := RotationKey{Rotation: 5, Key: next.key}
	h := startMixer(t, func(c *Config) {
		c.ReplayDir = dir
		c.ReplayFlushInterval = 20 * time.Millisecond
	})
	h.mustSetKeys(t, k4, k5)
	h.Submit(packetVia(t, mix.key, 0, next, []byte("x")), false)
	h.next(t)
	held4 := h.keys.lookup(false)
	waitFor(t, "periodic save", func() bool {
		f, err := replay.Load(held4.path, held4.binding, 100_000, replay.DefaultFPRate)
		return err == nil && f.Inserted() == 1
	})

	h.mustSetKeys(t, k5) // rotation 4 ends
	if _, err := os.Stat(held4.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file of the dropped key still there: %v", err)
	}
	// An idle key is not written: a missing file loads as an empty filter.
	held5 := h.keys.lookup(true)
	time.Sleep(60 * time.Millisecond)
	if _, err := os.Stat(held5.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file written for a key that saw no packet: %v", err)
	}
	// A flush after the drop must not bring the dropped key's file back.
	h.Submit(packetVia(t, next.key, 0, mix, []byte("y")), true)
	h.next(t)
	waitFor(t, "save of the remaining key", func() bool {
		_, err := os.Stat(held5.path)
		return err == nil
	})
	time.Sleep(60 * time.Millisecond)
	h.shutdown(t)
	if _, err := os.Stat(held4.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file of the dropped key came back: %v", err)
	}
}

// TestReplayPruneStale checks that files of keys a node no longer holds (it
// was down when their rotation ended) and temporary files left by a crash are
// deleted, while corrupt files kept aside stay.
func TestReplayPruneStale(t *testing.T) {
	dir := t.TempDir()
	stale := []string{"replay-1-0011223344556677.bloom", "replay-3-0011223344556677.bloom.tmp-12345"}
	kept := []string{"replay-2-0011223344556677.bloom.corrupt", "notes.txt"}
	for _, name := range append(append([]string{}, stale...), kept...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := startMixer(t, withReplayDir(dir))
	h.mustSetKeys(t, RotationKey{Rotation: 4, Key: newNode(t).key})
	for _, name := range stale {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not pruned: %v", name, err)
		}
	}
	for _, name := range kept {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s pruned: %v", name, err)
		}
	}
}

func TestReplayConfigRejects(t *testing.T) {
	fwd := func([32]byte, []byte, bool) {}
	if _, err := New(Config{Forward: fwd, ReplayFlushInterval: -time.Second}); err == nil {
		t.Error("New with a negative flush interval succeeded")
	}
	if _, err := New(Config{Forward: fwd, ReplayFPRate: 2}); err == nil {
		t.Error("New with a false-positive rate of 2 succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := New(Config{Forward: fwd, ReplayDir: filepath.Join(file, "sub")}); err == nil {
		t.Error("New with a replay directory under a file succeeded")
	}
}
