package platform

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// planMarkRestore reads the sysctl that must be 1, and records it if not.
func planMarkRestore(ns *boundNetNS) ([]sysctlRecord, error) {
	var recs []sysctlRecord
	err := ns.run(func() error {
		v, err := readSysctl(srcValidMark)
		if errors.Is(err, unix.ENOENT) {
			return nil // no IPv4 here
		}
		if err == nil && v != "1" {
			recs = append(recs, sysctlRecord{Key: srcValidMark, Old: v})
		}
		return err
	})
	return recs, err
}

// applyMarkRestore installs MarkTable for mark and sets the sysctls to 1.
func applyMarkRestore(ns *boundNetNS, mark uint32, sysctls []sysctlRecord) error {
	conn, err := newNFTConn(ns)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	t := &nftables.Table{Name: MarkTable, Family: nftables.TableFamilyINet}
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	mangle := nftables.ChainPriorityMangle
	pre := conn.AddChain(&nftables.Chain{Name: "premangle", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: mangle})
	post := conn.AddChain(&nftables.Chain{Name: "postmangle", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: mangle})
	// TCP for the gateway and directory connections, UDP for fast mode's
	// WireGuard to the entry (as wg-quick does it for WireGuard).
	for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
		// meta l4proto PROTO meta mark set ct mark
		conn.AddRule(rule(t, pre, matchL4proto(proto), one(
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg})))
		// meta l4proto PROTO meta mark MARK ct mark set meta mark
		conn.AddRule(rule(t, post, matchL4proto(proto), matchMark(mark), one(
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg},
			&expr.Ct{Key: expr.CtKeyMARK, SourceRegister: true, Register: reg})))
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("install table %s: %w", MarkTable, err)
	}
	return ns.run(func() error {
		for _, s := range sysctls {
			if err := writeSysctl(s.Key, "1"); err != nil {
				return err
			}
		}
		return nil
	})
}

// undoMarkRestore puts the sysctls back and removes MarkTable.
func undoMarkRestore(ns *boundNetNS, rec *routeRecord) error {
	var errs []error
	errs = append(errs, ns.run(func() error {
		var errs []error
		for _, s := range rec.Sysctls {
			errs = append(errs, writeSysctl(s.Key, s.Old))
		}
		return errors.Join(errs...)
	}))
	if rec.MarkTable != "" {
		conn, err := newNFTConn(ns)
		if err == nil {
			err = deleteTable(conn, &nftables.Table{Name: rec.MarkTable, Family: nftables.TableFamilyINet})
			conn.CloseLasting()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove table %s: %w", rec.MarkTable, err))
		}
	}
	return errors.Join(errs...)
}
