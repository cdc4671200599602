package platform

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Split is the exclusion group and its nftables table (see split.go).
// Remove undoes both.
type Split struct {
	statePath string
	ns        *boundNetNS
	group     string // the group's name below the hierarchy's root
	exclude   Exclude

	mu   sync.Mutex
	done bool
}

// ApplySplit makes the exclusion group of the calling thread's network
// namespace (or takes over one left by a crashed run) and the table that
// sends its programs' packets out by the main table. Pass Exclude to the
// kill switch to let them through it.
func ApplySplit(cfg SplitConfig) (*Split, error) {
	if cfg.StatePath == "" {
		return nil, errors.New("split tunnel: no state file path")
	}
	if cfg.Mark == 0 {
		return nil, errors.New("split tunnel: no firewall mark")
	}
	ns, err := currentNetNS()
	if err != nil {
		return nil, fmt.Errorf("split tunnel: %w", err)
	}
	s := &Split{statePath: cfg.StatePath, ns: ns}
	if err := s.apply(cfg); err != nil {
		return nil, fmt.Errorf("split tunnel: %w", errors.Join(err, s.Remove()))
	}
	return s, nil
}

func (s *Split) apply(cfg SplitConfig) error {
	s.group = excludeGroupName(s.ns.inode)
	err := updateState(s.statePath, func(st *hostState) error {
		if st.Split != nil {
			if err := s.ns.checkRecorded("split tunnel", st.Split.NetNS); err != nil {
				return err
			}
		}
		st.Split = &splitRecord{NetNS: s.ns.inode, Table: SplitTable, Group: s.group}
		return nil
	})
	if err != nil {
		return err
	}
	err = withCgroupRoot(func(r *cgroupRoot) error {
		s.exclude, err = r.makeGroup(s.group)
		return err
	})
	if err != nil {
		return err
	}
	return s.install(cfg.Mark)
}

// install replaces the split table in one transaction.
func (s *Split) install(mark uint32) error {
	conn, err := newNFTConn(s.ns)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	t := &nftables.Table{Name: SplitTable, Family: nftables.TableFamilyINet}
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	// A route chain: when it changes the mark the kernel looks the route
	// up again, so the packet leaves by the main table's default route
	// although its socket was routed into the tunnel when it connected.
	out := conn.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeRoute,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityMangle})
	// socket cgroupv2 level L ID meta mark set MARK
	conn.AddRule(rule(t, out, matchCgroup(s.exclude), one(
		&expr.Immediate{Register: reg, Data: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg})))
	// Such a packet still has the tunnel's source address: masquerade it
	// to the uplink's. The daemon's own marked sockets were routed by the
	// main table from the start and have a local address of the uplink
	// already: they are left alone.
	post := conn.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	// meta mark MARK fib saddr . oif type != local masquerade
	conn.AddRule(rule(t, post, matchMark(mark), one(
		&expr.Fib{Register: reg, ResultADDRTYPE: true, FlagSADDR: true, FlagOIF: true},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Masq{})))
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("install table %s: %w", SplitTable, err)
	}
	return nil
}

// matchCgroup is `socket cgroupv2 level L ID`: the socket was made by a
// process of the group or of a group below it.
func matchCgroup(e Exclude) []expr.Any {
	return []expr.Any{
		&expr.Socket{Key: expr.SocketKeyCgroupv2, Level: e.Level, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: binaryutil.NativeEndian.PutUint64(e.CgroupID)},
	}
}

// addExcludeRules queues the kill switch's exceptions for the exclusion
// group: out, whatever its sockets send; in, replies to them.
func addExcludeRules(c *nftables.Conn, t *nftables.Table, out, in *nftables.Chain, e Exclude) {
	if e.IsZero() {
		return
	}
	c.AddRule(rule(t, out, matchCgroup(e), one(accept())))
	c.AddRule(rule(t, in, matchCgroup(e), matchCtEstablished(), one(accept())))
}

// Exclude names the group for the kill switch; nil excludes nothing.
func (s *Split) Exclude() Exclude {
	if s == nil {
		return Exclude{}
	}
	return s.exclude
}

// Remove deletes the table and the group. Programs still in the group are
// moved out first (to the hierarchy's root): from then on they go through
// the tunnel like any other, also after a later connect.
func (s *Split) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil
	}
	err := removeSplit(s.ns, s.group)
	if err == nil {
		err = updateState(s.statePath, func(st *hostState) error {
			if st.Split != nil && st.Split.NetNS == s.ns.inode {
				st.Split = nil
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("split tunnel: %w", err)
	}
	s.done = true
	s.ns.close()
	return nil
}

func removeSplit(ns *boundNetNS, group string) error {
	var errs []error
	conn, err := newNFTConn(ns)
	if err == nil {
		err = deleteTable(conn, &nftables.Table{Name: SplitTable, Family: nftables.TableFamilyINet})
		conn.CloseLasting()
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("remove table %s: %w", SplitTable, err))
	}
	if group != "" {
		errs = append(errs, withCgroupRoot(func(r *cgroupRoot) error { return r.removeGroup(group) }))
	}
	return errors.Join(errs...)
}

// restoreSplit removes what a crashed run's ApplySplit left, in the calling
// thread's namespace.
func restoreSplit(rec *splitRecord) error {
	ns, err := currentNetNS()
	if err != nil {
		return fmt.Errorf("split tunnel: %w", err)
	}
	defer ns.close()
	if err := ns.checkRecorded("split tunnel", rec.NetNS); err != nil {
		return err
	}
	if err := removeSplit(ns, rec.Group); err != nil {
		return fmt.Errorf("split tunnel: %w", err)
	}
	return nil
}

// excludeGroupHere is the name of the calling thread's network namespace's
// exclusion group.
func excludeGroupHere() (string, error) {
	ns, err := currentNetNS()
	if err != nil {
		return "", err
	}
	defer ns.close()
	return excludeGroupName(ns.inode), nil
}

// JoinExcludeGroup moves the calling process into the exclusion group of
// its thread's network namespace: its sockets made from now on, and its
// children's, bypass the tunnel. Only root may; it fails when no tunnel is
// up there.
func JoinExcludeGroup() error {
	name, err := excludeGroupHere()
	if err != nil {
		return fmt.Errorf("split tunnel: %w", err)
	}
	err = withCgroupRoot(func(r *cgroupRoot) error {
		st, err := r.stat(name)
		if errors.Is(err, unix.ENOENT) {
			return errors.New("no tunnel is up in this network namespace: nothing to exclude from")
		}
		if err != nil {
			return err
		}
		if st.Uid != 0 || st.Mode&0o022 != 0 {
			return fmt.Errorf("exclusion group %s is not root's alone (uid %d, mode %o): refused", name, st.Uid, st.Mode&0o777)
		}
		return r.writeProcs(name, os.Getpid())
	})
	if err != nil {
		return fmt.Errorf("split tunnel: %w", err)
	}
	return nil
}

// ExcludedPrograms lists the processes in the exclusion group of the calling
// thread's network namespace as "PID NAME"; none when no tunnel is up.
func ExcludedPrograms() ([]string, error) {
	name, err := excludeGroupHere()
	if err != nil {
		return nil, fmt.Errorf("split tunnel: %w", err)
	}
	var pids []int
	err = withCgroupRoot(func(r *cgroupRoot) error {
		pids, err = r.pids(name)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("split tunnel: %w", err)
	}
	out := make([]string, 0, len(pids))
	for _, pid := range pids {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		out = append(out, fmt.Sprintf("%d %s", pid, strings.TrimSpace(string(comm))))
	}
	return out, nil
}
