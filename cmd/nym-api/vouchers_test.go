package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nym-go/nym/mixnet/authority"
	"github.com/nym-go/nym/mixnet/ticket"
)

// TestVouchersCreateAddList mints vouchers at one authority, installs them
// at another from the printed codes, and lists them as the operator would.
func TestVouchersCreateAddList(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	run := func(stdin string, args ...string) (string, error) {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetIn(strings.NewReader(stdin))
		root.SetArgs(args)
		err := root.Execute()
		return out.String(), err
	}
	out, err := run("", "vouchers", "create", "--data-dir", a, "--tickets", "50", "--type", "wireguard-exit", "--count", "3")
	if err != nil {
		t.Fatal(err)
	}
	codes := strings.Fields(out)
	if len(codes) != 3 {
		t.Fatalf("create printed %q", out)
	}
	for _, c := range codes {
		v, err := ticket.ParseVoucher(c)
		if err != nil || v.Type != ticket.TypeWireGuardExit || v.Tickets != 50 {
			t.Fatalf("code %q: %+v %v", c, v, err)
		}
	}
	if out, err := run(strings.Join(codes, "\n"), "vouchers", "add", "--data-dir", b, "--file", "-"); err != nil || !strings.Contains(out, "added 3") {
		t.Fatalf("add: %q %v", out, err)
	}
	if out, err := run("", "vouchers", "add", "--data-dir", b, codes[0]); err != nil || !strings.Contains(out, "added 0") {
		t.Fatalf("adding one again: %q %v", out, err)
	}
	if _, err := run("", "vouchers", "add", "--data-dir", b, "nv1.bogus"); err == nil {
		t.Fatal("a malformed code was added")
	}
	if _, err := run("", "vouchers", "create", "--data-dir", a, "--type", "bogus"); err == nil {
		t.Fatal("a voucher of an unknown type was minted")
	}
	out, err = run("", "vouchers", "list", "--data-dir", b)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes {
		if !strings.Contains(out, c+"\twireguard-exit\t50\tunused") {
			t.Fatalf("list printed:\n%s", out)
		}
	}
	fi, err := os.Stat(filepath.Join(b, authority.VouchersFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("vouchers file: %v %v", fi.Mode(), err)
	}
}

// TestInitMakesTicketKeys: `nym-api init` makes the ticket issuer keys, so
// the first vote carries them.
func TestInitMakesTicketKeys(t *testing.T) {
	dir := t.TempDir()
	root := newRootCommand()
	root.SetOut(&bytes.Buffer{})
	root.SetArgs([]string{"init", "--data-dir", dir})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	keys, err := filepath.Glob(filepath.Join(dir, authority.TicketKeysDir, "*.pem"))
	if err != nil || len(keys) != 2*len(ticket.Types) {
		t.Fatalf("init made %d ticket keys (%v), want today's and tomorrow's of each type", len(keys), err)
	}
}
