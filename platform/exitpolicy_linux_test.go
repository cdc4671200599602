package platform

import (
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// checkPolicyCompiles compiles p to nftables rules and serialises every
// expression as it would go to the kernel.
func checkPolicyCompiles(t *testing.T, p *ExitPolicy) {
	t.Helper()
	rules := compileExitPolicy(&nftables.Table{Name: ExitTable, Family: nftables.TableFamilyINet}, p)
	if len(rules) < len(p.Rules) {
		t.Fatalf("%d rules compiled to %d", len(p.Rules), len(rules))
	}
	for _, r := range rules {
		for _, e := range r.Exprs {
			if _, err := expr.Marshal(unix.NFPROTO_INET, e); err != nil {
				t.Fatalf("compile %+v: %v", p.Rules, err)
			}
		}
	}
}
