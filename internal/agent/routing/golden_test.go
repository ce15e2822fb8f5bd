package routing_test

import (
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/routing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden renders the plan of every representative state and compares
// it with testdata/golden/<state>.txt. Run with -update after an intended
// change and review the diff.
func TestGolden(t *testing.T) {
	for _, st := range states() {
		t.Run(st.name, func(t *testing.T) {
			got := routing.Desired(&st.in).Render()
			path := filepath.Join("testdata", "golden", st.name+".txt")
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
				t.Errorf("rendered plan differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestDesiredOrderIndependent: shuffling every list of the input gives the
// same plan.
func TestDesiredOrderIndependent(t *testing.T) {
	for _, st := range states() {
		t.Run(st.name, func(t *testing.T) {
			want := routing.Desired(&st.in).Render()
			r := rand.New(rand.NewPCG(1, 2))
			for range 20 {
				in := st.in
				in.Nodes, in.Pools, in.Peers = shuffled(r, in.Nodes), shuffled(r, in.Pools), shuffled(r, in.Peers)
				in.Blocks, in.Borrowed = shuffled(r, in.Blocks), shuffled(r, in.Borrowed)
				if diff := cmp.Diff(want, routing.Desired(&in).Render()); diff != "" {
					t.Fatalf("plan of the shuffled input differs (-first +shuffled):\n%s", diff)
				}
			}
		})
	}
}

func shuffled[T any](r *rand.Rand, s []T) []T {
	s = slices.Clone(s)
	r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}
