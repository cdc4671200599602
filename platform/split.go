package platform

import (
	"fmt"
	"regexp"
)

// Split tunnelling: the programs of one cgroup v2 group (the exclusion
// group) bypass the tunnel. Their sockets are matched by nftables (`socket
// cgroupv2`), marked with the tunnel's firewall mark in a route chain of
// output (so the kernel routes them again, by the main table, as it does
// the daemon's own sockets), masqueraded to the uplink's address, and let
// through by the kill switch (KillSwitchRules.Exclude).
//
// Who may exclude: root alone. The group is a directory of root's, mode
// 0755, so only root may write a process into its cgroup.procs (cgroup v2
// also requires write access to the common ancestor, the hierarchy's root,
// which is root's too). A user cannot put itself outside the tunnel; `nymvpn
// exclude` runs under sudo, joins the group, and drops to the invoking user
// before it runs the program. The programs' children stay in the group.

// SplitTable is the nftables table (family inet) of the split tunnel's
// marking and masquerading.
const SplitTable = "nymvpn_split"

// Exclude names the exclusion group for nftables: the zero value excludes
// nothing.
type Exclude struct {
	// CgroupID is the group's cgroup v2 id (the inode number of its
	// directory), Level its depth below the hierarchy's root.
	CgroupID uint64
	Level    uint32
}

// IsZero tells whether e excludes nothing. A group at level 0 would be the
// hierarchy's root, every process: never excluded.
func (e Exclude) IsZero() bool { return e.CgroupID == 0 || e.Level == 0 }

// SplitConfig says how excluded programs leave.
type SplitConfig struct {
	// StatePath is the state file that records the group and the table
	// before they are made, for Restore after a crash.
	StatePath string
	// Mark is the firewall mark routed by the main table (RouteConfig.Mark).
	Mark uint32
}

// splitRecord is what ApplySplit made, for Restore: the table, and the
// group (named after the network namespace, see excludeGroupName).
type splitRecord struct {
	NetNS uint64 `json:"netns"`
	Table string `json:"table"`
	Group string `json:"group"`
}

var excludeGroupRE = regexp.MustCompile(`^nymvpn-exclude-[0-9]{1,20}$`)

// excludeGroupName is the group of the network namespace with this inode:
// the cgroup hierarchy is one for the whole machine, so two daemons in two
// namespaces (tests, containers) each have their own.
func excludeGroupName(netnsInode uint64) string {
	return fmt.Sprintf("nymvpn-exclude-%d", netnsInode)
}

func (r *splitRecord) validate() error {
	if r.Table != SplitTable {
		return fmt.Errorf("table %q is not ours", r.Table)
	}
	if !excludeGroupRE.MatchString(r.Group) {
		return fmt.Errorf("group %q is not ours", r.Group)
	}
	return nil
}
