package records

import (
	"os/exec"
	"strings"
	"testing"
)

// The record builders stay pure: no DNS library, no datastore, no kernel or
// network code (DESIGN.md §4).
func TestPureImports(t *testing.T) {
	for _, pkg := range []string{".", "../mesos"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, bad := range []string{"github.com/miekg/dns", "go.etcd.io/", "github.com/vishvananda/", "github.com/google/nftables", "github.com/osrg/gobgp", "internal/datastore", "net/http"} {
				if strings.Contains(dep, bad) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
