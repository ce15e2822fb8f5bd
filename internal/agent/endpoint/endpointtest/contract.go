package endpointtest

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
)

// Harness is one fresh environment for a contract case.
type Harness struct {
	DP endpoint.Dataplane
	// NewNetNS returns the path of a new, empty container namespace that
	// lives until the end of the test.
	NewNetNS func(t *testing.T) string
	// RemoveNetNS makes a container namespace disappear (the container died).
	RemoveNetNS func(t *testing.T, path string)
}

// FakeHarness returns a Harness around a new Fake.
func FakeHarness(t *testing.T) Harness {
	f := NewFake()
	n := 0
	return Harness{
		DP: f,
		NewNetNS: func(t *testing.T) string {
			n++
			return "/fake/netns/" + t.Name() + "/" + strconv.Itoa(n)
		},
		RemoveNetNS: func(t *testing.T, path string) { f.RemoveNetNS(path) },
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// ignoreIndex drops what differs between implementations.
var ignoreIndex = cmpopts.IgnoreFields(endpoint.HostEndpoint{}, "Index")

func listEndpoints(t *testing.T, dp endpoint.Dataplane) []endpoint.HostEndpoint {
	t.Helper()
	got, err := dp.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return got
}

func wantList(t *testing.T, dp endpoint.Dataplane, want []endpoint.HostEndpoint) {
	t.Helper()
	if diff := cmp.Diff(want, listEndpoints(t, dp), ignoreIndex, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("List mismatch (-want +got):\n%s", diff)
	}
}

func wantErr(t *testing.T, what string, err error, substr string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), substr) {
		t.Errorf("%s = %v, want error containing %q", what, err, substr)
	}
}

// RunContract checks the behaviour the agent relies on. newHarness is
// called once per case.
func RunContract(t *testing.T, newHarness func(t *testing.T) Harness) {
	ctx := context.Background()
	cases := []struct {
		name string
		run  func(t *testing.T, h Harness)
	}{
		{"add list check del", func(t *testing.T, h Harness) {
			ns := h.NewNetNS(t)
			cfg := endpoint.Config{ContainerID: "c1", IfName: "eth0", NetNS: ns, Addrs: []netip.Prefix{pfx("10.65.0.1/26")}, MTU: 1400}
			res, err := h.DP.Add(ctx, cfg)
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			name := endpoint.HostIfName("c1", "eth0")
			if res.HostIfName != name || res.HostMAC != endpoint.HostMAC || res.Sandbox != ns {
				t.Errorf("Add result = %+v, want HostIfName %s, HostMAC %s, Sandbox %s", res, name, endpoint.HostMAC, ns)
			}
			if res.ContainerMAC == "" || res.ContainerIfIndex == 0 {
				t.Errorf("Add result = %+v, want ContainerMAC and ContainerIfIndex set", res)
			}
			wantList(t, h.DP, []endpoint.HostEndpoint{{Name: name, Up: true, Addrs: []netip.Prefix{pfx("10.65.0.1/32")}}})
			if err := h.DP.Check(ctx, cfg); err != nil {
				t.Errorf("Check after Add: %v", err)
			}
			if err := h.DP.Del(ctx, "c1", "eth0", ns); err != nil {
				t.Fatalf("Del: %v", err)
			}
			wantList(t, h.DP, nil)
			wantErr(t, "Check after Del", h.DP.Check(ctx, cfg), "does not exist")
			if err := h.DP.Del(ctx, "c1", "eth0", ns); err != nil {
				t.Errorf("second Del: %v", err)
			}
		}},
		{"address on two endpoints", func(t *testing.T, h Harness) {
			ns1, ns2 := h.NewNetNS(t), h.NewNetNS(t)
			a := endpoint.Config{ContainerID: "c1", IfName: "eth0", NetNS: ns1, Addrs: []netip.Prefix{pfx("10.65.0.1/32")}}
			if _, err := h.DP.Add(ctx, a); err != nil {
				t.Fatalf("Add a: %v", err)
			}
			b := endpoint.Config{ContainerID: "c2", IfName: "eth0", NetNS: ns2, Addrs: []netip.Prefix{pfx("10.65.0.1/32")}}
			_, err := h.DP.Add(ctx, b)
			wantErr(t, "Add b with a's address", err, "already exists on interface "+endpoint.HostIfName("c1", "eth0"))
			wantList(t, h.DP, []endpoint.HostEndpoint{{Name: endpoint.HostIfName("c1", "eth0"), Up: true, Addrs: []netip.Prefix{pfx("10.65.0.1/32")}}})
			b.Addrs = []netip.Prefix{pfx("10.65.0.2/32")}
			if _, err := h.DP.Add(ctx, b); err != nil {
				t.Errorf("Add b with its own address after a failed Add: %v", err)
			}
		}},
		{"interface name taken in the namespace", func(t *testing.T, h Harness) {
			ns := h.NewNetNS(t)
			a := endpoint.Config{ContainerID: "c1", IfName: "eth0", NetNS: ns, Addrs: []netip.Prefix{pfx("10.65.0.1/32")}}
			if _, err := h.DP.Add(ctx, a); err != nil {
				t.Fatalf("Add a: %v", err)
			}
			b := endpoint.Config{ContainerID: "c2", IfName: "eth0", NetNS: ns, Addrs: []netip.Prefix{pfx("10.65.0.2/32")}}
			_, err := h.DP.Add(ctx, b)
			wantErr(t, "Add b", err, "eth0 already exists")
			wantList(t, h.DP, []endpoint.HostEndpoint{{Name: endpoint.HostIfName("c1", "eth0"), Up: true, Addrs: []netip.Prefix{pfx("10.65.0.1/32")}}})
		}},
		{"re-add replaces the stale interface", func(t *testing.T, h Harness) {
			old := endpoint.Config{ContainerID: "c1", IfName: "eth0", NetNS: h.NewNetNS(t), Addrs: []netip.Prefix{pfx("10.65.0.1/32")}}
			if _, err := h.DP.Add(ctx, old); err != nil {
				t.Fatalf("Add: %v", err)
			}
			cfg := old
			cfg.NetNS = h.NewNetNS(t)
			cfg.Addrs = []netip.Prefix{pfx("10.65.0.7/32")}
			if _, err := h.DP.Add(ctx, cfg); err != nil {
				t.Fatalf("second Add: %v", err)
			}
			wantList(t, h.DP, []endpoint.HostEndpoint{{Name: endpoint.HostIfName("c1", "eth0"), Up: true, Addrs: []netip.Prefix{pfx("10.65.0.7/32")}}})
			if err := h.DP.Check(ctx, cfg); err != nil {
				t.Errorf("Check: %v", err)
			}
		}},
		{"del after the namespace is gone", func(t *testing.T, h Harness) {
			ns := h.NewNetNS(t)
			cfg := endpoint.Config{ContainerID: "c1", IfName: "eth0", NetNS: ns, Addrs: []netip.Prefix{pfx("10.65.0.1/32")}}
			if _, err := h.DP.Add(ctx, cfg); err != nil {
				t.Fatalf("Add: %v", err)
			}
			h.RemoveNetNS(t, ns)
			if err := h.DP.Del(ctx, "c1", "eth0", ns); err != nil {
				t.Errorf("Del: %v", err)
			}
			if err := h.DP.Del(ctx, "c1", "eth0", ""); err != nil {
				t.Errorf("Del without netns: %v", err)
			}
			wantList(t, h.DP, nil)
			_, err := h.DP.Add(ctx, cfg)
			wantErr(t, "Add into a removed netns", err, ns)
		}},
		{"delete host interface", func(t *testing.T, h Harness) {
			for _, c := range []endpoint.Config{
				{ContainerID: "c1", IfName: "eth0", NetNS: h.NewNetNS(t), Addrs: []netip.Prefix{pfx("10.65.0.1/32")}},
				{ContainerID: "c2", IfName: "eth0", NetNS: h.NewNetNS(t), Addrs: []netip.Prefix{pfx("10.65.0.2/32"), pfx("fd00:65::2/128")}},
			} {
				if _, err := h.DP.Add(ctx, c); err != nil {
					t.Fatalf("Add %s: %v", c.ContainerID, err)
				}
			}
			if err := h.DP.DeleteHostIf(ctx, endpoint.HostIfName("c1", "eth0")); err != nil {
				t.Fatalf("DeleteHostIf: %v", err)
			}
			if err := h.DP.DeleteHostIf(ctx, endpoint.HostIfName("c1", "eth0")); err != nil {
				t.Errorf("second DeleteHostIf: %v", err)
			}
			wantErr(t, "DeleteHostIf(eth0)", h.DP.DeleteHostIf(ctx, "eth0"), "not a workload interface")
			wantList(t, h.DP, []endpoint.HostEndpoint{{Name: endpoint.HostIfName("c2", "eth0"), Up: true,
				Addrs: []netip.Prefix{pfx("10.65.0.2/32"), pfx("fd00:65::2/128")}}})
		}},
		{"bad config changes nothing", func(t *testing.T, h Harness) {
			ns := h.NewNetNS(t)
			for _, c := range []struct {
				cfg     endpoint.Config
				wantErr string
			}{
				{endpoint.Config{ContainerID: "c1", IfName: "eth0", NetNS: ns}, "Addrs"},
				{endpoint.Config{ContainerID: "c1", IfName: "eth0", NetNS: ns, Addrs: []netip.Prefix{pfx("10.65.0.1/32")}, MTU: 70000}, "MTU 70000"},
				{endpoint.Config{ContainerID: "c1", IfName: "a/b", NetNS: ns, Addrs: []netip.Prefix{pfx("10.65.0.1/32")}}, "IfName"},
				{endpoint.Config{IfName: "eth0", NetNS: ns, Addrs: []netip.Prefix{pfx("10.65.0.1/32")}}, "ContainerID"},
			} {
				_, err := h.DP.Add(ctx, c.cfg)
				wantErr(t, "Add", err, c.wantErr)
			}
			wantList(t, h.DP, nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newHarness(t)) })
	}
}
