package agent

import (
	"context"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
)

type countingDriver struct{ applies int }

func (d *countingDriver) Apply(context.Context, *policy.Ruleset) error { d.applies++; return nil }
func (d *countingDriver) FlushConntrack([]netip.Addr) error            { return nil }
func (d *countingDriver) Current() bool                                { return true }

// TestUpdateRefusesDomainChanges: a network set change that touches
// allowedEgressDomains goes to a full Sync (only it computes which
// patterns feed a learned set); one without domains stays an element
// update.
func TestUpdateRefusesDomainChanges(t *testing.T) {
	drv := &countingDriver{}
	dp := &KernelDataplane{Policy: drv}
	v := &View{Node: "n1", Pools: []*api.IPPool{{ObjectMeta: api.ObjectMeta{Name: "p"}, Spec: api.IPPoolSpec{CIDR: "10.65.0.0/16"}}}}
	if err := dp.Sync(context.Background(), v); err != nil {
		t.Fatal(err)
	}
	plain := &api.GlobalNetworkSet{ObjectMeta: api.ObjectMeta{Name: "s", Labels: map[string]string{"a": "b"}}, Spec: api.NetworkSetSpec{Nets: []string{"192.0.2.0/24"}}}
	doms := &api.GlobalNetworkSet{ObjectMeta: plain.ObjectMeta, Spec: api.NetworkSetSpec{Nets: plain.Spec.Nets, AllowedEgressDomains: []string{"db.example.com"}}}
	if handled, err := dp.Update(context.Background(), []policy.Change{{New: plain}}); err != nil || !handled {
		t.Fatalf("Update(plain set) = %v, %v; want handled", handled, err)
	}
	if handled, err := dp.Update(context.Background(), []policy.Change{{Old: plain, New: doms}}); err != nil || handled {
		t.Fatalf("Update(set gaining domains) = %v, %v; want not handled (a full Sync)", handled, err)
	}
}
