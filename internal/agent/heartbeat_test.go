package agent

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/api"
)

// TestHeartbeatKeepsOperatorEdits: the agent fills in the Node's addresses
// at start where they are unset; a heartbeat writes status only, so an
// operator's edit of the spec survives it (issue 14, item 4).
func TestHeartbeatKeepsOperatorEdits(t *testing.T) {
	g := newReaperRig(t) // Node n1 exists, with an empty spec
	a := g.a
	a.nodeIP = netip.MustParsePrefix("10.1.0.5/24")
	ctx := context.Background()
	if err := a.writeNode(ctx, true); err != nil {
		t.Fatalf("register: %v", err)
	}
	n := getNode(t, a)
	if n.Spec.BGP == nil || n.Spec.BGP.IPv4Address != "10.1.0.5/24" {
		t.Fatalf("after start, spec.bgp = %+v; want ipv4Address 10.1.0.5/24", n.Spec.BGP)
	}

	// The operator moves BGP to another address and records orchRefs.
	n.Spec.BGP.IPv4Address = "10.2.0.9/24"
	n.Spec.OrchRefs = []api.OrchRef{{Orchestrator: "mesos", NodeName: "agent-7"}}
	if _, err := a.client.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	edited := getNode(t, a).Spec

	for range 3 {
		if err := a.writeNode(ctx, false); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	after := getNode(t, a)
	if diff := cmp.Diff(edited, after.Spec); diff != "" {
		t.Errorf("heartbeats changed the operator's spec (-edited +after):\n%s", diff)
	}
	if after.Status.LastHeartbeat == "" || after.Status.AgentVersion == "" {
		t.Errorf("heartbeat wrote no status: %+v", after.Status)
	}

	// A restart keeps the edit too: the address is set, and the agent was
	// not told one (--node-ip).
	if err := a.writeNode(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := getNode(t, a).Spec.BGP.IPv4Address; got != "10.2.0.9/24" {
		t.Errorf("after a restart spec.bgp.ipv4Address = %q; want the operator's 10.2.0.9/24", got)
	}
}

func getNode(t *testing.T, a *Agent) *api.Node {
	t.Helper()
	r, err := a.client.Get(context.Background(), "Node", "", a.cfg.Node)
	if err != nil {
		t.Fatal(err)
	}
	return r.(*api.Node)
}
