// Package kerneltest holds an in-memory fake of the routing kernel driver
// and the contract test both the fake and the real driver pass, so tests
// of the router can use the fake with confidence.
//
// It is for tests only and imports testing; production code must not
// import it.
package kerneltest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/agent/routing/kernel"
)

// Driver is what the contract exercises: the methods the router uses.
type Driver interface {
	Apply(ks *routing.KernelState, opts kernel.ApplyOptions) (kernel.Report, error)
	Routes() ([]routing.Route, error)
	EnableForwarding() error
}

var (
	_ Driver = (*kernel.Driver)(nil)
	_ Driver = (*Fake)(nil)
)

// Uplink is the device the contract's harness must provide, holding
// UplinkAddr; gateway routes go through it.
const Uplink = "up0"

// UplinkAddr is the harness uplink's address.
var UplinkAddr = netip.MustParsePrefix("192.0.2.10/24")

// Fake keeps routes and devices in memory with the real driver's rules.
type Fake struct {
	mu         sync.Mutex
	routes     map[netip.Prefix]routing.Route
	foreign    map[netip.Prefix]bool
	vxlan      *routing.VXLANDevice
	peers      []routing.VXLANPeer
	ipip       *routing.IPIPDevice
	NoIPIP     bool // behave like a kernel without the ipip module
	Forwarding bool
	Applies    int
	// Fail, when set, makes Apply fail with it (tests of retries).
	Fail error
}

// NewFake returns an empty fake.
func NewFake() *Fake {
	return &Fake{routes: map[netip.Prefix]routing.Route{}, foreign: map[netip.Prefix]bool{}}
}

// AddForeign records a route Tabby did not make.
func (f *Fake) AddForeign(dst netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.foreign[dst] = true
}

// EnableForwarding records that forwarding was enabled.
func (f *Fake) EnableForwarding() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Forwarding = true
	return nil
}

// State returns a copy of what the fake holds.
func (f *Fake) State() *routing.KernelState {
	f.mu.Lock()
	defer f.mu.Unlock()
	ks := &routing.KernelState{VXLAN: f.vxlan, IPIP: f.ipip, VXLANPeers: slices.Clone(f.peers)}
	for _, r := range f.routes {
		ks.Routes = append(ks.Routes, r)
	}
	slices.SortFunc(ks.Routes, routing.CompareRoutes)
	return ks
}

// Routes lists the routes the fake holds.
func (f *Fake) Routes() ([]routing.Route, error) { return f.State().Routes, nil }

// Apply follows the real driver: only differences change, foreign routes
// conflict, routes through missing devices fail.
func (f *Fake) Apply(ks *routing.KernelState, opts kernel.ApplyOptions) (kernel.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Applies++
	var rep kernel.Report
	if f.Fail != nil {
		return rep, f.Fail
	}
	if ks == nil {
		ks = &routing.KernelState{}
	}
	var errs []error
	switch {
	case ks.VXLAN == nil && f.vxlan != nil:
		rep.Changes = append(rep.Changes, "delete device "+f.vxlan.Name)
		for dst, r := range f.routes {
			if r.Dev == f.vxlan.Name {
				delete(f.routes, dst)
			}
		}
		f.vxlan, f.peers = nil, nil
	case ks.VXLAN != nil:
		if f.vxlan == nil || *f.vxlan != *ks.VXLAN {
			rep.Changes = append(rep.Changes, "set device "+ks.VXLAN.Name)
			v := *ks.VXLAN
			f.vxlan = &v
		}
		if !slices.Equal(f.peers, ks.VXLANPeers) {
			rep.Changes = append(rep.Changes, "set vxlan peers")
			f.peers = slices.Clone(ks.VXLANPeers)
		}
	}
	if ks.IPIP != nil {
		if f.NoIPIP {
			rep.IPIP = fmt.Errorf("create %s: %w", ks.IPIP.Name, kernel.ErrIPIPUnsupported)
		} else if f.ipip == nil || *f.ipip != *ks.IPIP {
			rep.Changes = append(rep.Changes, "set device "+ks.IPIP.Name)
			v := *ks.IPIP
			f.ipip = &v
		}
	}
	wanted := map[netip.Prefix]bool{}
	for _, r := range ks.Routes {
		if wanted[r.Dst] {
			continue
		}
		wanted[r.Dst] = true
		if cur, ok := f.routes[r.Dst]; ok && sameRoute(r, cur) {
			continue
		}
		if r.Type == routing.RouteUnicast && r.Dev != "" && !f.hasDev(r.Dev) {
			errs = append(errs, fmt.Errorf("route %s: device %s: link not found", r, r.Dev))
			continue
		}
		if f.foreign[r.Dst] {
			rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("route %s: the kernel already has a route to %s that Tabby did not make; left alone", r, r.Dst))
			continue
		}
		change := "add route " + r.String()
		if _, ok := f.routes[r.Dst]; ok {
			change = "replace route " + r.String()
		}
		if r.Type == routing.RouteUnicast && r.Dev == "" {
			r.Dev = Uplink
		}
		f.routes[r.Dst] = r
		rep.Changes = append(rep.Changes, change)
	}
	if !opts.KeepStale {
		for dst, r := range f.routes {
			if !wanted[dst] {
				delete(f.routes, dst)
				rep.Changes = append(rep.Changes, "delete route "+r.String())
			}
		}
	}
	return rep, errors.Join(errs...)
}

func (f *Fake) hasDev(name string) bool {
	return name == Uplink || (f.vxlan != nil && f.vxlan.Name == name) || (f.ipip != nil && f.ipip.Name == name)
}

func sameRoute(want, got routing.Route) bool {
	if want.Type != got.Type || want.Dst != got.Dst {
		return false
	}
	if want.Type == routing.RouteBlackhole {
		return true
	}
	return want.Gateway == got.Gateway && want.OnLink == got.OnLink && (want.Dev == "" || want.Dev == got.Dev)
}

// Harness is one driver under test. AddForeign adds a route Tabby did
// not make (proto static) to dst via the uplink's gateway 192.0.2.1, and
// HasForeign checks it is still there.
type Harness struct {
	Driver     Driver
	AddForeign func(t *testing.T, dst netip.Prefix)
	HasForeign func(t *testing.T, dst netip.Prefix) bool
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// RunContract checks a driver against the rules every driver follows.
func RunContract(t *testing.T, newHarness func(t *testing.T) Harness) {
	vx := &routing.VXLANDevice{Name: routing.VXLANDeviceName, VNI: 4096, Port: 4789, LocalIP: UplinkAddr.Addr(), Addr: addr("10.244.0.1"), MAC: "66:0a:f4:00:00:01"}
	peers := []routing.VXLANPeer{{Node: "h2", NodeIP: addr("192.0.2.20"), TunnelAddr: addr("10.244.0.65"), MAC: "66:0a:f4:00:00:02",
		TunnelAddr6: routing.VXLANLinkLocal("66:0a:f4:00:00:02")}}
	full := &routing.KernelState{VXLAN: vx, VXLANPeers: peers, Routes: []routing.Route{
		{Dst: pfx("10.244.0.0/26"), Type: routing.RouteBlackhole},
		{Dst: pfx("10.244.0.64/26"), Gateway: addr("10.244.0.65"), Dev: routing.VXLANDeviceName, OnLink: true},
		{Dst: pfx("10.244.1.0/26"), Gateway: addr("192.0.2.20")},
		{Dst: pfx("10.244.2.0/26"), Gateway: addr("192.0.2.30"), Dev: Uplink},
		{Dst: pfx("fd00:244::/122"), Type: routing.RouteBlackhole},
		{Dst: pfx("fd00:244::40/122"), Gateway: addr("fe80::640a:f4ff:fe00:2"), Dev: routing.VXLANDeviceName},
	}}

	tests := []struct {
		name string
		run  func(t *testing.T, h Harness)
	}{
		{"apply then read back", func(t *testing.T, h Harness) {
			mustApply(t, h.Driver, full, kernel.ApplyOptions{})
			checkRoutes(t, h.Driver, full.Routes)
		}},
		{"second apply changes nothing", func(t *testing.T, h Harness) {
			mustApply(t, h.Driver, full, kernel.ApplyOptions{})
			if rep := mustApply(t, h.Driver, full, kernel.ApplyOptions{}); len(rep.Changes) != 0 {
				t.Errorf("second Apply made changes %q, want none", rep.Changes)
			}
		}},
		{"changed route is replaced, missing one removed", func(t *testing.T, h Harness) {
			mustApply(t, h.Driver, full, kernel.ApplyOptions{})
			next := &routing.KernelState{VXLAN: vx, Routes: []routing.Route{
				{Dst: pfx("10.244.0.0/26"), Type: routing.RouteBlackhole},
				{Dst: pfx("10.244.1.0/26"), Gateway: addr("192.0.2.21")},
			}}
			rep := mustApply(t, h.Driver, next, kernel.ApplyOptions{})
			checkRoutes(t, h.Driver, next.Routes)
			want := []string{"replace route 10.244.1.0/26 via 192.0.2.21"}
			if !slices.Contains(rep.Changes, want[0]) {
				t.Errorf("changes %q do not include %q", rep.Changes, want[0])
			}
		}},
		{"keep stale leaves undesired routes", func(t *testing.T, h Harness) {
			mustApply(t, h.Driver, full, kernel.ApplyOptions{})
			mustApply(t, h.Driver, &routing.KernelState{VXLAN: vx}, kernel.ApplyOptions{KeepStale: true})
			checkRoutes(t, h.Driver, full.Routes)
		}},
		{"empty state removes everything of ours", func(t *testing.T, h Harness) {
			mustApply(t, h.Driver, full, kernel.ApplyOptions{})
			mustApply(t, h.Driver, &routing.KernelState{}, kernel.ApplyOptions{})
			checkRoutes(t, h.Driver, nil)
		}},
		{"foreign routes are never touched", func(t *testing.T, h Harness) {
			h.AddForeign(t, pfx("10.244.1.0/26"))
			h.AddForeign(t, pfx("198.51.100.0/24"))
			rep := mustApply(t, h.Driver, full, kernel.ApplyOptions{})
			if len(rep.Conflicts) != 1 {
				t.Errorf("conflicts %q, want one for 10.244.1.0/26", rep.Conflicts)
			}
			mustApply(t, h.Driver, &routing.KernelState{}, kernel.ApplyOptions{})
			for _, d := range []string{"10.244.1.0/26", "198.51.100.0/24"} {
				if !h.HasForeign(t, pfx(d)) {
					t.Errorf("foreign route to %s is gone", d)
				}
			}
		}},
		{"route through a missing device fails alone", func(t *testing.T, h Harness) {
			st := &routing.KernelState{Routes: []routing.Route{
				{Dst: pfx("10.244.0.0/26"), Type: routing.RouteBlackhole},
				{Dst: pfx("10.244.0.64/26"), Gateway: addr("10.244.0.65"), Dev: routing.VXLANDeviceName, OnLink: true},
			}}
			if _, err := h.Driver.Apply(st, kernel.ApplyOptions{}); err == nil {
				t.Errorf("Apply through a missing device: no error")
			}
			checkRoutes(t, h.Driver, st.Routes[:1])
		}},
		{"any order of states converges", func(t *testing.T, h Harness) {
			states := []*routing.KernelState{
				full,
				{},
				{VXLAN: vx, Routes: full.Routes[:2]},
				{Routes: []routing.Route{{Dst: pfx("10.244.1.0/26"), Gateway: addr("192.0.2.21")}, {Dst: pfx("10.244.3.0/26"), Type: routing.RouteBlackhole}}},
				{VXLAN: &routing.VXLANDevice{Name: vx.Name, VNI: 4097, Port: 4789, LocalIP: vx.LocalIP, Addr: addr("10.244.9.1"), MAC: "66:0a:f4:00:00:09"}},
			}
			r := rand.New(rand.NewPCG(7, 11))
			for walk := range 4 {
				for _, i := range r.Perm(len(states)) {
					if _, err := h.Driver.Apply(states[i], kernel.ApplyOptions{KeepStale: r.IntN(2) == 0}); err != nil {
						t.Fatalf("walk %d: Apply state %d: %v", walk, i, err)
					}
				}
				mustApply(t, h.Driver, full, kernel.ApplyOptions{})
				checkRoutes(t, h.Driver, full.Routes)
				if rep := mustApply(t, h.Driver, full, kernel.ApplyOptions{}); len(rep.Changes) != 0 {
					t.Errorf("walk %d: not converged, another Apply changed %q", walk, rep.Changes)
				}
			}
		}},
		{"forwarding", func(t *testing.T, h Harness) {
			if err := h.Driver.EnableForwarding(); err != nil {
				t.Fatalf("EnableForwarding: %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newHarness(t)) })
	}
}

func mustApply(t *testing.T, d Driver, ks *routing.KernelState, o kernel.ApplyOptions) kernel.Report {
	t.Helper()
	rep, err := d.Apply(ks, o)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return rep
}

// checkRoutes compares the driver's routes with want; a wanted route
// without a device matches any device.
func checkRoutes(t *testing.T, d Driver, want []routing.Route) {
	t.Helper()
	got, err := d.Routes()
	if err != nil {
		t.Fatalf("Routes: %v", err)
	}
	want = slices.Clone(want)
	slices.SortFunc(want, routing.CompareRoutes)
	byDst := map[netip.Prefix]routing.Route{}
	for _, w := range want {
		byDst[w.Dst] = w
	}
	for i, g := range got {
		if w, ok := byDst[g.Dst]; ok && w.Dev == "" && g.Type == routing.RouteUnicast {
			got[i].Dev = ""
		}
	}
	if diff := cmp.Diff(render(want), render(got)); diff != "" {
		t.Errorf("kernel routes (-want +got):\n%s", diff)
	}
}

func render(rs []routing.Route) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}
