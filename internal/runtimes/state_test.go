package runtimes_test

import (
	"context"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/ipam"
)

// hostState is what Tabby holds for one host: its endpoints, the IPAM
// handles holding its addresses, and its host-side interfaces.
type hostState struct {
	Endpoints []*api.WorkloadEndpoint
	Handles   []string
	Links     []string
}

func stateOf(t *testing.T, c *agenttest.Cluster, h *agenttest.Host) hostState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s hostState
	rs, _, err := c.Client.List(ctx, "WorkloadEndpoint", "")
	if err != nil {
		t.Fatalf("list endpoints: %v", err)
	}
	for _, r := range rs {
		if w := r.(*api.WorkloadEndpoint); w.Spec.Node == h.Name {
			s.Endpoints = append(s.Endpoints, w)
		}
	}
	handles, err := ipam.New(c.Store, nil).NodeHandles(ctx, h.Name)
	if err != nil {
		t.Fatalf("IPAM handles of %s: %v", h.Name, err)
	}
	for k := range handles {
		s.Handles = append(s.Handles, k)
	}
	sort.Strings(s.Handles)
	out, err := exec.Command("ip", "-n", h.NS, "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("links of %s: %v %s", h.Name, err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], "tby") {
			s.Links = append(s.Links, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return s
}

// wantState fails unless h holds exactly n endpoints, n handles and n
// host interfaces, and IPAM's check finds nothing wrong.
func wantState(t *testing.T, c *agenttest.Cluster, h *agenttest.Host, n int, when string) hostState {
	t.Helper()
	s := stateOf(t, c, h)
	if len(s.Endpoints) != n || len(s.Handles) != n || len(s.Links) != n {
		t.Fatalf("%s: %d endpoints, handles %v, interfaces %v; want %d of each", when, len(s.Endpoints), s.Handles, s.Links, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := ipam.New(c.Store, nil).Check(ctx, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("%s: ipam check: %v %v", when, rep.Problems, err)
	}
	return s
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}
