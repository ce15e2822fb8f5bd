package endpointtest

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
)

func TestFakeContract(t *testing.T) {
	RunContract(t, FakeHarness)
}

func TestFakeSetErrorAndCalls(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	boom := errors.New("boom")
	f.SetError("Add", boom)
	cfg := endpoint.Config{ContainerID: "c1", IfName: "eth0", NetNS: "/fake/ns", Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}}
	if _, err := f.Add(ctx, cfg); !errors.Is(err, boom) {
		t.Fatalf("Add = %v, want %v", err, boom)
	}
	f.SetError("Add", nil)
	if _, err := f.Add(ctx, cfg); err != nil {
		t.Fatalf("Add after clearing the error: %v", err)
	}
	if err := f.Del(ctx, "c1", "eth0", "/fake/ns"); err != nil {
		t.Fatalf("Del: %v", err)
	}
	want := []string{"Add c1 eth0", "Add c1 eth0", "Del c1 eth0"}
	if diff := cmp.Diff(want, f.Calls()); diff != "" {
		t.Errorf("Calls mismatch (-want +got):\n%s", diff)
	}
	if got := f.Configs(); len(got) != 0 {
		t.Errorf("Configs after Del = %v, want none", got)
	}
}
