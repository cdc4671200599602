package gateway

import (
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
)

// testClock is Config.Now for tests that jump over retention periods
// instead of sleeping through them.
type testClock struct {
	start  time.Time
	offset atomic.Int64
}

func newTestClock() *testClock { return &testClock{start: time.Now()} }

func (c *testClock) now() time.Time { return c.start.Add(time.Duration(c.offset.Load())) }

// set moves the clock to start + d.
func (c *testClock) set(d time.Duration) { c.offset.Store(int64(d)) }

// retentionConfig is a gateway whose sweep runs often, on clock, with an
// hour's TTL and two hours' retention.
func retentionConfig(clock *testClock, more func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Now = clock.now
		c.MessageTTL = time.Hour
		c.ClientRetention = 2 * time.Hour
		c.SweepInterval = 20 * time.Millisecond
		if more != nil {
			more(c)
		}
	}
}

// diskClients reads every client record in a stopped gateway's database.
func diskClients(t *testing.T, dir string) map[[32]byte]clientMeta {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, dbFileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := make(map[[32]byte]clientMeta)
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClients).ForEachBucket(func(k []byte) error {
			var m clientMeta
			if err := m.UnmarshalBinary(tx.Bucket(bucketClients).Bucket(k).Get(keyMeta)); err != nil {
				return err
			}
			out[[32]byte(k)] = m
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitForgotten waits until the gateway no longer knows addr.
func waitForgotten(t *testing.T, tg *testGateway, addr [32]byte) {
	t.Helper()
	waitFor(t, "client forgotten", func() bool {
		_, ok := tg.Client(addr)
		return !ok
	})
}

func TestRetentionForgetsOnlyIdleEmptyClients(t *testing.T) {
	leakcheck.Check(t)
	dir, gwKey, clock := t.TempDir(), newKey(t), newTestClock()
	cfg := retentionConfig(clock, nil)
	tg := startGateway(t, dir, gwKey, cfg)

	idle, connected, recent, storedFor, storedRecently := newKey(t), newKey(t), newKey(t), newKey(t), newKey(t)
	cases := []struct {
		name string
		key  link.KeyPair
		kept bool
	}{
		{"idle, empty, last seen past retention", idle, false},
		{"connected since before the retention period", connected, true},
		{"connected within the retention period", recent, true},
		{"messages stored, whatever its last-seen time", storedFor, true},
		{"had a message stored within the period, since expired", storedRecently, true},
	}

	// At 0 everyone connects; all but one leave.
	for _, k := range []link.KeyPair{idle, storedFor, storedRecently} {
		tg.dial(k, false).disconnect(tg)
	}
	tg.dial(connected, false)

	// At 1 h 30 a packet is stored for storedRecently; it expires at 2 h 30.
	// storedFor comes by, so it is still known when its packet comes.
	clock.set(90 * time.Minute)
	tg.deliver(storedRecently.Public, id(1), payloadN(1))
	waitStored(t, tg, storedRecently.Public, 1)
	tg.dial(storedFor, false).disconnect(tg)

	// At 2 h 40, retention (2 h) is over for everything seen at 0.
	clock.set(160 * time.Minute)
	tg.dial(recent, false).disconnect(tg)
	tg.deliver(storedFor.Public, id(2), payloadN(2))
	waitStored(t, tg, storedFor.Public, 1)
	// Pretend it was last seen at 0: only its stored message keeps it.
	cl := tg.lookup(storedFor.Public)
	cl.mu.Lock()
	cl.lastSeen = clock.start.UnixNano()
	cl.mu.Unlock()

	waitForgotten(t, tg, idle.Public)
	waitStored(t, tg, storedRecently.Public, 0) // its message expired
	tg.waitMetric("nym_gateway_clients_forgotten_total", 1)
	for _, tc := range cases {
		if _, ok := tg.Client(tc.key.Public); ok != tc.kept {
			t.Errorf("%s: known %v, want %v", tc.name, ok, tc.kept)
		}
	}
	if v := tg.metric("nym_gateway_clients_forgotten_total"); v != 1 {
		t.Errorf("clients_forgotten_total = %v, want 1", v)
	}
	if v := tg.metric("nym_gateway_clients_recorded"); v != 4 {
		t.Errorf("clients_recorded = %v, want 4", v)
	}
	tg.stop()

	// The deletion is on disk, and the others' records are intact.
	disk := diskClients(t, dir)
	for _, tc := range cases {
		if _, ok := disk[tc.key.Public]; ok != tc.kept {
			t.Errorf("%s: on disk %v, want %v", tc.name, ok, tc.kept)
		}
	}
	if got, want := disk[storedRecently.Public].LastSeen, clock.start.Add(90*time.Minute).UnixNano(); got != want {
		t.Errorf("storedRecently last seen %d on disk, want the store time %d", got, want)
	}

	// A restart loads what is left, and forgets nothing more yet.
	tg = startGateway(t, dir, gwKey, cfg)
	for _, tc := range cases {
		if _, ok := tg.Client(tc.key.Public); ok != tc.kept {
			t.Errorf("after restart, %s: known %v, want %v", tc.name, ok, tc.kept)
		}
	}
	if v := tg.metric("nym_gateway_clients_recorded"); v != 4 {
		t.Errorf("after restart clients_recorded = %v, want 4", v)
	}
}

func TestForgottenClientReturns(t *testing.T) {
	leakcheck.Check(t)
	dir, gwKey, key, clock := t.TempDir(), newKey(t), newKey(t), newTestClock()
	cfg := retentionConfig(clock, nil)
	tg := startGateway(t, dir, gwKey, cfg)

	c := tg.dial(key, true)
	deliverN(tg, key.Public, 0, 3)
	last := expectInOrder(t, c, 0, 3, 0)[2]
	c.disconnect(tg)
	clock.set(3 * time.Hour)
	waitForgotten(t, tg, key.Public)
	tg.stop()

	// Forgotten on disk too; while it is away its packets are refused, not
	// stored, and earn no ack.
	if _, ok := diskClients(t, dir)[key.Public]; ok {
		t.Fatal("forgotten client still on disk")
	}
	tg = startGateway(t, dir, gwKey, cfg)
	if _, ok := tg.Client(key.Public); ok {
		t.Fatal("forgotten client known after restart")
	}
	tg.deliver(key.Public, id(9), []byte("while forgotten"))
	if v := tg.metric("nym_gateway_packets_dropped_total", "reason", "unknown_client"); v != 1 {
		t.Errorf("dropped unknown_client = %v, want 1", v)
	}

	// Back: registered afresh, numbered above anything it saw before, live
	// and from the store alike.
	c = tg.dial(key, false)
	d := expectNextIsMarker(t, tg, c)
	if d.Seq <= last {
		t.Errorf("seq %d for the returning client does not follow %d", d.Seq, last)
	}
	c.confirm(d.Seq)
	c.disconnect(tg)
	deliverN(tg, key.Public, 10, 2)
	waitStored(t, tg, key.Public, 2)
	c = tg.dial(key, false)
	seqs := expectInOrder(t, c, 10, 2, d.Seq)
	c.confirm(seqs[1])
	waitStored(t, tg, key.Public, 0)
	expectNextIsMarker(t, tg, c)
}

func TestMaxStoredClientsCap(t *testing.T) {
	leakcheck.Check(t)
	dir, gwKey, clock := t.TempDir(), newKey(t), newTestClock()
	cfg := retentionConfig(clock, func(c *Config) { c.MaxStoredClients = 2 })
	tg := startGateway(t, dir, gwKey, cfg)

	a, b, extra := newKey(t), newKey(t), newKey(t)
	tg.dial(a, false).disconnect(tg)
	tg.dial(b, false).disconnect(tg)

	// Over the cap a new identity is served while connected...
	c := tg.dial(extra, false)
	if v := tg.metric("nym_gateway_clients_unrecorded_total"); v != 1 {
		t.Errorf("clients_unrecorded_total = %v, want 1", v)
	}
	if v := tg.metric("nym_gateway_clients_recorded"); v != 2 {
		t.Errorf("clients_recorded = %v, want 2", v)
	}
	expectNextIsMarker(t, tg, c)
	// ...but nothing for it is ever stored.
	cl := tg.lookup(extra.Public)
	cl.mu.Lock()
	stored := tg.storeLocked(cl, 0, id(3), payloadN(3))
	cl.mu.Unlock()
	if stored {
		t.Error("stored a packet for an unrecorded client")
	}
	if v := tg.metric("nym_gateway_packets_dropped_total", "reason", "clients_cap"); v != 1 {
		t.Errorf("dropped clients_cap = %v, want 1", v)
	}
	// Once it leaves it is gone, and packets for it are not stored.
	c.conn.Close()
	waitForgotten(t, tg, extra.Public)
	tg.deliver(extra.Public, id(4), payloadN(4))
	if v := tg.metric("nym_gateway_packets_dropped_total", "reason", "unknown_client"); v != 1 {
		t.Errorf("dropped unknown_client = %v, want 1", v)
	}

	// Recorded clients are unaffected: packets for them are stored.
	deliverN(tg, a.Public, 1, 2)
	waitStored(t, tg, a.Public, 2)
	tg.stop()
	disk := diskClients(t, dir)
	if _, ok := disk[extra.Public]; ok || len(disk) != 2 {
		t.Errorf("%d records on disk, unrecorded client among them: %v; want only the 2 recorded", len(disk), ok)
	}

	// Forgetting makes room again.
	clock.set(3 * time.Hour)
	tg = startGateway(t, dir, gwKey, cfg)
	waitForgotten(t, tg, b.Public) // a still has (now expired) messages to sweep first
	waitForgotten(t, tg, a.Public)
	tg.dial(extra, false).disconnect(tg)
	if v := tg.metric("nym_gateway_clients_recorded"); v != 1 {
		t.Errorf("clients_recorded = %v, want 1", v)
	}
}

// A version 1 meta loads with its numbering and drop count, and counts as
// seen at load, so however old it is it is not forgotten at once.
func TestMetaVersion1Loads(t *testing.T) {
	leakcheck.Check(t)
	dir, gwKey, key, clock := t.TempDir(), newKey(t), newKey(t), newTestClock()
	st, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.Update(func(tx *bolt.Tx) error {
		cb, err := tx.Bucket(bucketClients).CreateBucket(key.Public[:])
		if err != nil {
			return err
		}
		return cb.Put(keyMeta, metaV1(70_000, 2))
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}

	clock.set(30 * 24 * time.Hour) // long after anything the record could say
	tg := startGateway(t, dir, gwKey, retentionConfig(clock, nil))
	// Let a few sweeps run (each is a commit): they must leave it alone.
	tg.waitMetric("nym_gateway_store_commits_total", 3)
	st2, ok := tg.Client(key.Public)
	if !ok || st2.Dropped != 2 {
		t.Fatalf("version 1 client: known %v, dropped %d; want known, 2", ok, st2.Dropped)
	}
	c := tg.dial(key, false)
	if s := c.nextStatus(); s.Code != gatewire.StatusRefused || !strings.Contains(s.Text, "2 messages") {
		t.Fatalf("status %d %q, want the 2 dropped messages reported", s.Code, s.Text)
	}
	if d := expectNextIsMarker(t, tg, c); d.Seq < 70_000 {
		t.Errorf("seq %d below the version 1 reservation 70000", d.Seq)
	}
	c.disconnect(tg)
	tg.stop()

	// Written back as version 2 with a real last-seen time.
	m, ok := diskClients(t, dir)[key.Public]
	if !ok || m.LastSeen != clock.now().UnixNano() || m.Reserved < 70_000 || m.Dropped != 0 {
		t.Fatalf("meta after upgrade %+v (on disk %v)", m, ok)
	}
}

func TestUnmarshalMeta(t *testing.T) {
	v2 := clientMeta{Reserved: 1 << 40, Dropped: 7, LastSeen: 1_700_000_000_123_456_789}
	cases := []struct {
		name    string
		b       []byte
		want    clientMeta
		wantErr bool
	}{
		{"version 2", v2.value(), v2, false},
		{"version 1", metaV1(1<<40, 7), clientMeta{Reserved: 1 << 40, Dropped: 7}, false},
		{"empty", nil, clientMeta{}, true},
		{"version 2, short", v2.value()[:metaLen-1], clientMeta{}, true},
		{"version 2, long", append(v2.value(), 0), clientMeta{}, true},
		{"version 1 length, version 2 byte", append([]byte{metaVersion}, metaV1(1, 1)[1:]...), clientMeta{}, true},
		{"version 2 length, version 1 byte", append([]byte{metaVersion1}, v2.value()[1:]...), clientMeta{}, true},
		{"unknown version", append([]byte{3}, v2.value()[1:]...), clientMeta{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got clientMeta
			err := got.UnmarshalBinary(tc.b)
			if tc.wantErr {
				if !errors.Is(err, errCorrupt) {
					t.Fatalf("err %v, want errCorrupt", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			// Whatever was read is written back as version 2.
			enc := got.value()
			var again clientMeta
			if err := again.UnmarshalBinary(enc); enc[0] != metaVersion || err != nil || again != tc.want {
				t.Errorf("re-encoded %x, read back %+v, %v", enc, again, err)
			}
		})
	}
}

func TestClientRetentionConfig(t *testing.T) {
	base := Config{Static: link.KeyPair{Public: [32]byte{1}}, DataDir: "x", Forward: func([32]byte, []byte, bool) bool { return true }}
	cases := []struct {
		name      string
		ttl, keep time.Duration
		want      time.Duration
		wantErr   bool
	}{
		{"defaults", 0, 0, DefaultClientRetention, false},
		{"long TTL stretches the default", 48 * time.Hour, 0, 14 * 24 * time.Hour, false},
		{"explicit", time.Hour, 2 * time.Hour, 2 * time.Hour, false},
		{"equal to the TTL", time.Hour, time.Hour, 0, true},
		{"below the TTL", 0, time.Hour, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.MessageTTL, c.ClientRetention = tc.ttl, tc.keep
			got, err := c.withDefaults()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err == nil && got.ClientRetention != tc.want {
				t.Errorf("ClientRetention %v, want %v", got.ClientRetention, tc.want)
			}
			if err == nil && got.MaxStoredClients != DefaultMaxStoredClients {
				t.Errorf("MaxStoredClients %d, want %d", got.MaxStoredClients, DefaultMaxStoredClients)
			}
		})
	}
}
