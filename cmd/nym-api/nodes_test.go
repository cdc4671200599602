package main

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/nym-go/nym/mixnet/authority"
	"github.com/nym-go/nym/mixnet/directory"
)

// TestNodesApproveRejectList runs the operator's admission commands on a
// data dir and reads the decisions back as the authority does.
func TestNodesApproveRejectList(t *testing.T) {
	dir := t.TempDir()
	var a, b directory.Key
	rand.Read(a[:])
	rand.Read(b[:])
	// Identities are base64url and may start with '-': "--" ends the flags.
	run := func(args ...string) (string, error) {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(args)
		err := root.Execute()
		return out.String(), err
	}
	if _, err := run("nodes", "approve", "--data-dir", dir, "--note", "ops@example.org", "--", a.String(), b.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := run("nodes", "reject", "--data-dir", dir, "--", b.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := run("nodes", "approve", "--data-dir", dir, "not-a-key"); err == nil || !strings.Contains(err.Error(), "not-a-key") {
		t.Fatalf("approving a malformed identity: %v", err)
	}
	out, err := run("nodes", "list", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, a.String()+"\tapprove") || !strings.Contains(out, "ops@example.org") || !strings.Contains(out, b.String()+"\treject") {
		t.Fatalf("list printed:\n%s", out)
	}
	got, err := authority.LoadDecisions(dir)
	if err != nil || got[a].Decision != authority.DecisionApprove || got[b].Decision != authority.DecisionReject {
		t.Fatalf("decisions: %v %v", got, err)
	}
}
