package authority

import (
	"fmt"
	"github.com/nym-go/nym/mixnet/directory"
	"slices"
	"testing"
)

// ids makes n distinct, readable identities starting at byte first.
func testID(i int) directory.Key { return directory.Key{byte(i >> 8), byte(i)} }

func cands(caps ...directory.Capabilities) []candidate {
	out := make([]candidate, len(caps))
	for i, c := range caps {
		out[i] = candidate{id: testID(i + 1), caps: c, score: 1}
	}
	return out
}

func repeatCaps(c directory.Capabilities, n int) []directory.Capabilities {
	return slices.Repeat([]directory.Capabilities{c}, n)
}

// filled is lim with its defaults.
func filled(t *testing.T, lim Limits) Limits {
	t.Helper()
	lim, err := lim.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return lim
}

// checkAssignment asserts what must hold for any assignment: every eligible
// node is placed exactly once, only in roles it offers, within the limits.
func checkAssignment(t *testing.T, a assignment, eligible []candidate, lim Limits) {
	t.Helper()
	lim = filled(t, lim)
	byID := map[directory.Key]candidate{}
	for _, c := range eligible {
		byID[c.id] = c
	}
	seen := map[directory.Key]string{}
	place := func(ids []directory.Key, role directory.Role, where string) {
		for _, id := range ids {
			c, ok := byID[id]
			if !ok {
				t.Errorf("%s holds %x, which is not eligible", where, id[:2])
				continue
			}
			if prev, dup := seen[id]; dup {
				t.Errorf("%x placed twice: %s and %s", id[:2], prev, where)
			}
			seen[id] = where
			if !c.caps.Allows(role) {
				t.Errorf("%x offers %s but was placed in %s", id[:2], c.caps, where)
			}
		}
	}
	place(a.Entry, directory.RoleEntry, "entry")
	place(a.Exit, directory.RoleExit, "exit")
	for l := range a.Layers {
		place(a.Layers[l], directory.RoleMix, fmt.Sprintf("layer %d", l+1))
		if len(a.Layers[l]) > lim.LayerSize {
			t.Errorf("layer %d has %d nodes, limit %d", l+1, len(a.Layers[l]), lim.LayerSize)
		}
	}
	place(a.Standby, directory.RoleStandby, "standby")
	if len(seen) != len(eligible) {
		t.Errorf("placed %d nodes, %d eligible", len(seen), len(eligible))
	}
	if len(a.Entry) > lim.MaxEntries || len(a.Exit) > lim.MaxExits {
		t.Errorf("entry %d / exit %d exceed limits %+v", len(a.Entry), len(a.Exit), lim)
	}
}

func sizes(a assignment) string {
	return fmt.Sprintf("entry=%d exit=%d layers=%d/%d/%d standby=%d",
		len(a.Entry), len(a.Exit), len(a.Layers[0]), len(a.Layers[1]), len(a.Layers[2]), len(a.Standby))
}

func TestAssignRolesFromCapabilities(t *testing.T) {
	for _, c := range []struct {
		name string
		caps []directory.Capabilities
		lim  Limits
		want string
	}{
		{"specialised nodes each get their role",
			[]directory.Capabilities{entryGW, {Exit: true}, mixOnly, mixOnly, mixOnly}, Limits{}, "entry=1 exit=1 layers=1/1/1 standby=0"},
		{"mix-only nodes never become gateways",
			repeatCaps(mixOnly, 6), Limits{}, "entry=0 exit=0 layers=2/2/2 standby=0"},
		{"gateway-only nodes never mix",
			repeatCaps(entryGW, 4), Limits{}, "entry=4 exit=0 layers=0/0/0 standby=0"},
		{"auto nodes spread over every role",
			repeatCaps(autoNode, 5), Limits{}, "entry=1 exit=1 layers=1/1/1 standby=0"},
		{"auto nodes round-robin",
			repeatCaps(autoNode, 10), Limits{}, "entry=2 exit=2 layers=2/2/2 standby=0"},
		{"exit-capable gateways serve as exits before entries",
			[]directory.Capabilities{exitGW, exitGW, mixOnly, mixOnly, mixOnly}, Limits{}, "entry=1 exit=1 layers=1/1/1 standby=0"},
		{"limits leave the rest on standby",
			append(repeatCaps(entryGW, 3), repeatCaps(mixOnly, 8)...), Limits{MaxEntries: 1, LayerSize: 2}, "entry=1 exit=0 layers=2/2/2 standby=4"},
		{"nobody", nil, Limits{}, "entry=0 exit=0 layers=0/0/0 standby=0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			el := cands(c.caps...)
			a := assignRoles(assignment{}, el, filled(t, c.lim), 7)
			checkAssignment(t, a, el, c.lim)
			if got := sizes(a); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestAssignPrefersSpecialisedNodes(t *testing.T) {
	// Node 1 is auto, node 2 can only exit: node 2 must be the exit, leaving
	// node 1 to mix.
	el := cands(autoNode, directory.Capabilities{Exit: true}, entryGW, mixOnly, mixOnly)
	a := assignRoles(assignment{}, el, filled(t, Limits{MaxExits: 1, MaxEntries: 1}), 1)
	checkAssignment(t, a, el, Limits{MaxExits: 1, MaxEntries: 1})
	if !slices.Equal(a.Exit, []directory.Key{testID(2)}) {
		t.Fatalf("exit = %x, want the exit-only node", a.Exit)
	}
	if sizes(a) != "entry=1 exit=1 layers=1/1/1 standby=0" {
		t.Fatalf("got %s", sizes(a))
	}
}

func TestAssignBalancedLayers(t *testing.T) {
	for n := 1; n <= 40; n++ {
		el := cands(repeatCaps(mixOnly, n)...)
		a := assignRoles(assignment{}, el, filled(t, Limits{}), uint64(n))
		checkAssignment(t, a, el, Limits{})
		lens := []int{len(a.Layers[0]), len(a.Layers[1]), len(a.Layers[2])}
		if slices.Max(lens)-slices.Min(lens) > 1 {
			t.Fatalf("%d mixes dealt unevenly: %v", n, lens)
		}
	}
	el := cands(repeatCaps(mixOnly, 20)...)
	a := assignRoles(assignment{}, el, filled(t, Limits{LayerSize: 5}), 1)
	if got := sizes(a); got != "entry=0 exit=0 layers=5/5/5 standby=5" {
		t.Fatalf("layer size 5, 20 mixes: got %s", got)
	}
}

func TestAssignKeepsPreviousRoles(t *testing.T) {
	el := cands(append([]directory.Capabilities{autoNode, autoNode}, repeatCaps(mixOnly, 9)...)...)
	first := assignRoles(assignment{}, el, filled(t, Limits{}), 1)
	// Three more nodes join; another epoch's tie-break order differs.
	more := cands(append(append([]directory.Capabilities{autoNode, autoNode}, repeatCaps(mixOnly, 9)...), repeatCaps(autoNode, 3)...)...)
	second := assignRoles(first, more, filled(t, Limits{}), 2)
	checkAssignment(t, second, more, Limits{})
	for g, ids := range first.groups() {
		for _, id := range ids {
			if !slices.Contains(second.groups()[g], id) {
				t.Errorf("%x moved out of group %d although still eligible", id[:2], g)
			}
		}
	}
}

func TestAssignFillsEmptyGroups(t *testing.T) {
	a, b, c, d, g1, g2, x := testID(1), testID(2), testID(3), testID(4), testID(5), testID(6), testID(7)
	mix := func(id directory.Key) candidate { return candidate{id: id, caps: mixOnly, score: 1} }
	auto := func(id directory.Key) candidate { return candidate{id: id, caps: autoNode, score: 1} }
	exit := func(id directory.Key) candidate {
		return candidate{id: id, caps: directory.Capabilities{Exit: true}, score: 1}
	}
	entry := func(id directory.Key) candidate { return candidate{id: id, caps: entryGW, score: 1} }
	for _, tc := range []struct {
		name     string
		prev     assignment
		eligible []candidate
		lim      Limits
		check    func(t *testing.T, got assignment)
	}{
		{
			name:     "from standby",
			prev:     assignment{Layers: [3][]directory.Key{{a}, {b}, {c}}, Standby: []directory.Key{d}},
			eligible: []candidate{mix(a), mix(b), mix(d)}, // c is gone
			lim:      Limits{LayerSize: 1},
			check: func(t *testing.T, got assignment) {
				if !slices.Equal(got.Layers[2], []directory.Key{d}) || !slices.Equal(got.Layers[0], []directory.Key{a}) || !slices.Equal(got.Layers[1], []directory.Key{b}) {
					t.Fatalf("layers %x, want a / b / d", got.Layers)
				}
			},
		},
		{
			name:     "from an over-full layer",
			prev:     assignment{Layers: [3][]directory.Key{{a, b, c}, {d}, {}}},
			eligible: []candidate{mix(a), mix(b), mix(c), mix(d)},
			check: func(t *testing.T, got assignment) {
				if !slices.Equal(got.Layers[0], []directory.Key{a, b}) || !slices.Equal(got.Layers[2], []directory.Key{c}) {
					t.Fatalf("layers %x, want a,b / d / c", got.Layers)
				}
			},
		},
		{
			name:     "from an auto gateway with spares",
			prev:     assignment{Entry: []directory.Key{g1, g2}, Exit: []directory.Key{x}, Layers: [3][]directory.Key{{a}, {b}, {c}}},
			eligible: []candidate{auto(g1), auto(g2), exit(x), mix(a), mix(b)}, // c is gone
			check: func(t *testing.T, got assignment) {
				if !slices.Equal(got.Layers[2], []directory.Key{g2}) || !slices.Equal(got.Entry, []directory.Key{g1}) {
					t.Fatalf("entry %x layers %x, want g2 moved to layer 3", got.Entry, got.Layers)
				}
			},
		},
		{
			name:     "never empties another group",
			prev:     assignment{Entry: []directory.Key{g1}, Exit: []directory.Key{x}, Layers: [3][]directory.Key{{a}, {b}, {c}}},
			eligible: []candidate{auto(g1), exit(x), mix(a), mix(b)},
			check: func(t *testing.T, got assignment) {
				if len(got.Layers[2]) != 0 || !slices.Equal(got.Entry, []directory.Key{g1}) {
					t.Fatalf("entry %x layers %x: the only entry must stay", got.Entry, got.Layers)
				}
			},
		},
		{
			name:     "an empty entry role filled from a layer with spares",
			prev:     assignment{Exit: []directory.Key{x}, Layers: [3][]directory.Key{{a, g1}, {b}, {c}}, Entry: []directory.Key{g2}},
			eligible: []candidate{exit(x), mix(a), auto(g1), mix(b), mix(c)}, // entry g2 is gone
			check: func(t *testing.T, got assignment) {
				if !slices.Equal(got.Entry, []directory.Key{g1}) || !slices.Equal(got.Layers[0], []directory.Key{a}) {
					t.Fatalf("entry %x layers %x, want g1 moved to entry", got.Entry, got.Layers)
				}
			},
		},
		{
			name:     "capabilities withdrawn: node re-placed",
			prev:     assignment{Entry: []directory.Key{d}, Layers: [3][]directory.Key{{a}, {b}, {c}}},
			eligible: []candidate{mix(a), mix(b), mix(c), mix(d), entry(g1)}, // d now mix-only
			check: func(t *testing.T, got assignment) {
				if !slices.Equal(got.Entry, []directory.Key{g1}) || slices.Contains(got.Entry, d) {
					t.Fatalf("entry %x, want g1 instead of d", got.Entry)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := assignRoles(tc.prev, tc.eligible, filled(t, tc.lim), 9)
			checkAssignment(t, got, tc.eligible, tc.lim)
			tc.check(t, got)
		})
	}
}
