package policy_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsStayPure: the compiler never links kernel, datastore or
// routing code (DESIGN.md §4).
func TestImportsStayPure(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/tabbynet/tabby/internal/agent/policy").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"netlink", "nftables", "gobgp", "etcd", "internal/datastore", "internal/agent/endpoint", "golang.org/x/sys"} {
			if strings.Contains(dep, banned) {
				t.Errorf("internal/agent/policy depends on %s", dep)
			}
		}
	}
}
