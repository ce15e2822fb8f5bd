package datastore_test

import (
	"context"
	"testing"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// TestDeleteIf: the owner check and the delete are one compare-and-swap.
func TestDeleteIf(t *testing.T) {
	ctx := context.Background()
	c := datastore.NewClient(memstore.New())
	w := &api.WorkloadEndpoint{ObjectMeta: api.ObjectMeta{Name: "n1-cni-x-eth0", Namespace: "default"},
		Spec: api.WorkloadEndpointSpec{Node: "n1", ContainerID: "new", IPNetworks: []string{"10.0.0.1/32"}}}
	if _, err := c.Create(ctx, w); err != nil {
		t.Fatal(err)
	}
	owner := func(cid string) func(api.Resource) bool {
		return func(r api.Resource) bool { return r.(*api.WorkloadEndpoint).Spec.ContainerID == cid }
	}
	if deleted, err := c.DeleteIf(ctx, "WorkloadEndpoint", "default", w.Name, owner("old")); deleted || err != nil {
		t.Fatalf("DeleteIf by another owner = %v, %v; want false, nil", deleted, err)
	}
	if _, err := c.Get(ctx, "WorkloadEndpoint", "default", w.Name); err != nil {
		t.Fatalf("refused DeleteIf removed the record: %v", err)
	}
	if deleted, err := c.DeleteIf(ctx, "WorkloadEndpoint", "default", w.Name, owner("new")); !deleted || err != nil {
		t.Fatalf("DeleteIf by the owner = %v, %v; want true, nil", deleted, err)
	}
	if deleted, err := c.DeleteIf(ctx, "WorkloadEndpoint", "default", w.Name, owner("new")); deleted || err != nil {
		t.Fatalf("DeleteIf of a missing record = %v, %v; want false, nil", deleted, err)
	}
	if _, err := c.DeleteIf(ctx, "NoSuchKind", "", "x", owner("new")); err == nil {
		t.Fatal("DeleteIf of an unknown kind: no error")
	}
}
