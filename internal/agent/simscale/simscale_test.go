package simscale

import (
	"context"
	"testing"
	"time"
)

// TestSimulatedCluster: the short form of the simulated scale run. Every
// endpoint add reaches the sets of every agent whose policies admit it,
// every delete leaves them, the last ruleset of sampled agents equals a
// full compile of the final state, and the agents took the remote changes
// through the incremental path.
func TestSimulatedCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{Agents: 6, Endpoints: 300, Policies: 60, Events: 30, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	if res.AgentsPerAdd < 1 {
		t.Errorf("an endpoint add reached %.1f agents on average, want at least 1", res.AgentsPerAdd)
	}
	if res.FullCompileChecked != 3 {
		t.Errorf("checked %d agents against a full compile, want 3", res.FullCompileChecked)
	}
	if res.IncrementalSyncs == 0 {
		t.Errorf("no agent took a change incrementally (%d full syncs)", res.FullSyncs)
	}
}
