package agent

import (
	"log/slog"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

func wep(name, ip string) *api.WorkloadEndpoint {
	return &api.WorkloadEndpoint{
		ObjectMeta: api.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       api.WorkloadEndpointSpec{Node: "n1", IPNetworks: []string{ip}},
	}
}

func TestTombstones(t *testing.T) {
	c := newCache(datastore.NewClient(memstore.New()), []string{"WorkloadEndpoint"}, slog.New(slog.DiscardHandler))
	c.node = "n1"
	c.put("WorkloadEndpoint", wep("a", "10.0.0.1/32"))
	c.put("WorkloadEndpoint", wep("b", "10.0.0.2/32"))
	c.remove("WorkloadEndpoint", wep("a", "10.0.0.1/32"))
	c.remove("WorkloadEndpoint", wep("b", "10.0.0.2/32"))
	now := time.Now()

	// Within the TTL both linger; the one whose address is reused does not.
	got, next := c.liveTombstones(now, map[string]bool{"ip:10.0.0.2/32": true})
	if len(got) != 1 || got[0].Name != "a" {
		t.Fatalf("tombstones = %v, want only a (b's address is held by a live endpoint)", got)
	}
	if next.IsZero() || next.Sub(now) > tombstoneTTL {
		t.Fatalf("next expiry %v, want within %s", next, tombstoneTTL)
	}
	// A live endpoint of the same name replaces its tombstone.
	if got, _ := c.liveTombstones(now, map[string]bool{"default/a": true}); len(got) != 1 || got[0].Name != "b" {
		t.Fatalf("tombstones = %v, want only b", got)
	}
	// After the TTL they are gone for good.
	if got, next := c.liveTombstones(now.Add(tombstoneTTL+time.Millisecond), nil); len(got) != 0 || !next.IsZero() {
		t.Fatalf("after the TTL: %v (next %v), want none", got, next)
	}
	// Removing something never cached leaves no tombstone.
	c.remove("WorkloadEndpoint", wep("zzz", "10.0.0.9/32"))
	if got, _ := c.liveTombstones(now, nil); len(got) != 0 {
		t.Fatalf("tombstone of an unknown endpoint: %v", got)
	}
}
