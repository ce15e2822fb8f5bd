package policy_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden compiles every representative state and compares the
// rendered ruleset with testdata/golden/<state>.nft, and its flat-cost
// form (policy.Flatten, what the agent programs) with
// testdata/golden/flat/<state>.nft. Run with -update after an intended
// change and review the diff.
func TestGolden(t *testing.T) {
	for _, form := range []string{"", "flat"} {
		for _, name := range policytest.StateNames() {
			t.Run(filepath.Join(form, name), func(t *testing.T) { golden(t, form, name) })
		}
	}
}

func golden(t *testing.T, form, name string) {
	rs, err := policy.Compile(policytest.States()[name])
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if form == "flat" {
		rs = policy.Flatten(rs)
	}
	got := rs.Render()
	path := filepath.Join("testdata", "golden", form, name+".nft")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("rendered ruleset differs from %s (-want +got):\n%s", path, diff)
	}
}

// TestCompileDeterministic: the same state compiles to the same text, and
// the order of the objects in the state does not matter.
func TestCompileDeterministic(t *testing.T) {
	for _, name := range policytest.StateNames() {
		t.Run(name, func(t *testing.T) {
			s := policytest.States()[name]
			a, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			reverse(s.Endpoints)
			reverse(s.Policies)
			reverse(s.GlobalPolicies)
			reverse(s.Profiles)
			reverse(s.HostEndpoints)
			reverse(s.NetworkSets)
			reverse(s.GlobalNetworkSets)
			reverse(s.Pools)
			b, err := policy.Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(a.Render(), b.Render()); diff != "" {
				t.Errorf("compiling the reversed state differs (-first +reversed):\n%s", diff)
			}
		})
	}
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}
