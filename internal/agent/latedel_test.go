package agent

import (
	"context"
	"testing"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/ipam"
)

// TestLateDelLeavesNewerContainer: a container's endpoint name is taken by
// a newer container (a pod recreated under the same name) before this
// agent's cache has seen it; the old container's late DEL must remove the
// old container's interface and addresses and leave the newer endpoint
// record, its addresses and its cache entry alone (issue 14, item 2).
func TestLateDelLeavesNewerContainer(t *testing.T) {
	g := newReaperRig(t)
	ctx := context.Background()
	old := g.attach("old")
	name := old.w.Name

	// The newer container writes the same name; the cache still holds
	// the old one (its watch is not running in this rig: it is stale).
	newHandle := ipam.HandleID("net1", "new", "eth0")
	allocs, err := g.a.ipam.Allocate(ctx, ipam.Request{Handle: newHandle, Node: "n1", IPv4: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := g.a.client.Get(ctx, "WorkloadEndpoint", "default", name)
	if err != nil {
		t.Fatal(err)
	}
	w := r.(*api.WorkloadEndpoint)
	w.Spec.ContainerID, w.Spec.IPAMHandle = "new", newHandle
	w.Spec.IPNetworks = []string{allocs[0].Addr.String() + "/32"}
	if _, err := g.a.client.Update(ctx, w); err != nil {
		t.Fatal(err)
	}

	if err := g.a.removeEndpoint(ctx, "default", name, "old", "eth0", old.netns, old.w.Spec.IPAMHandle); err != nil {
		t.Fatalf("late DEL: %v", err)
	}

	got, err := g.a.client.Get(ctx, "WorkloadEndpoint", "default", name)
	if err != nil {
		t.Fatalf("the newer container's endpoint is gone after the old one's DEL: %v", err)
	}
	if cid := got.(*api.WorkloadEndpoint).Spec.ContainerID; cid != "new" {
		t.Fatalf("endpoint %s holds container %q after the late DEL; want %q", name, cid, "new")
	}
	if addrs, err := g.a.ipam.HandleAddrs(ctx, newHandle); err != nil || len(addrs) != 1 {
		t.Errorf("the newer container's addresses after the late DEL: %v, %v; want 1", addrs, err)
	}
	if addrs, err := g.a.ipam.HandleAddrs(ctx, old.w.Spec.IPAMHandle); err != nil || len(addrs) != 0 {
		t.Errorf("the old container's addresses after its DEL: %v, %v; want none", addrs, err)
	}

	// A second DEL of the old container is still a no-op success.
	if err := g.a.removeEndpoint(ctx, "default", name, "old", "eth0", old.netns, old.w.Spec.IPAMHandle); err != nil {
		t.Fatalf("repeated late DEL: %v", err)
	}
	if _, err := g.a.client.Get(ctx, "WorkloadEndpoint", "default", name); err != nil {
		t.Fatalf("the newer container's endpoint is gone after a repeated late DEL: %v", err)
	}
}
