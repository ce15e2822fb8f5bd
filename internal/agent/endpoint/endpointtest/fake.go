// Package endpointtest provides an in-memory endpoint.Dataplane for the
// agent's unit tests, and the contract test that both it and the kernel
// implementation (endpoint.Wirer) pass.
//
// It imports endpoint, the standard library and go-cmp; it must not import
// netlink or enter namespaces.
package endpointtest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
)

var _ endpoint.Dataplane = (*Fake)(nil)

// Fake is an in-memory endpoint.Dataplane. It models what the agent can
// observe of the kernel: one host interface per endpoint, one host route
// per address (so an address cannot be on two endpoints), interface names
// unique per namespace, and endpoints vanishing with their namespace.
// Every namespace path exists until RemoveNetNS is called for it.
type Fake struct {
	mu     sync.Mutex
	next   int
	eps    map[string]*fakeEP // by host interface name
	goneNS map[string]bool
	errs   map[string]error
	calls  []string
}

type fakeEP struct {
	cfg endpoint.Config
	res endpoint.Result
}

// NewFake returns an empty Fake.
func NewFake() *Fake {
	return &Fake{eps: map[string]*fakeEP{}, goneNS: map[string]bool{}, errs: map[string]error{}}
}

// SetError makes every later call of op ("Add", "Del", "Check", "List",
// "DeleteHostIf") fail with err, before doing anything; nil clears it.
func (f *Fake) SetError(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.errs, op)
		return
	}
	f.errs[op] = err
}

// RemoveNetNS simulates the container's namespace disappearing: its
// endpoints vanish, as the kernel deletes a veth whose peer's namespace dies.
func (f *Fake) RemoveNetNS(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.goneNS[path] = true
	for name, ep := range f.eps {
		if ep.cfg.NetNS == path {
			delete(f.eps, name)
		}
	}
}

// Calls returns the operations called so far, e.g. "Add tby0123456789a".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Configs returns the configuration of every endpoint, sorted by host
// interface name.
func (f *Fake) Configs() []endpoint.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []endpoint.Config
	for _, name := range f.sortedNames() {
		out = append(out, f.eps[name].cfg)
	}
	return out
}

func (f *Fake) sortedNames() []string {
	names := make([]string, 0, len(f.eps))
	for n := range f.eps {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (f *Fake) begin(op, arg string) error {
	f.calls = append(f.calls, op+" "+arg)
	return f.errs[op]
}

func hostPrefixes(addrs []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(addrs))
	for _, p := range addrs {
		out = append(out, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}

func defaults(cfg endpoint.Config) endpoint.Config {
	if cfg.MTU == 0 {
		cfg.MTU = endpoint.DefaultMTU
	}
	if cfg.HostIfName == "" {
		cfg.HostIfName = endpoint.HostIfName(cfg.ContainerID, cfg.IfName)
	}
	return cfg
}

// fakeMAC is a stable locally administered MAC for a host interface name.
func fakeMAC(name string) string {
	s := sha256.Sum256([]byte(name))
	return net.HardwareAddr{0x02, s[0], s[1], s[2], s[3], s[4]}.String()
}

// Add implements endpoint.Dataplane.
func (f *Fake) Add(ctx context.Context, cfg endpoint.Config) (endpoint.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("Add", cfg.ContainerID+" "+cfg.IfName); err != nil {
		return endpoint.Result{}, err
	}
	if err := cfg.Validate(); err != nil {
		return endpoint.Result{}, fmt.Errorf("add endpoint: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return endpoint.Result{}, fmt.Errorf("add endpoint: %w", err)
	}
	cfg = defaults(cfg)
	if f.goneNS[cfg.NetNS] {
		return endpoint.Result{}, fmt.Errorf("add endpoint %s: open netns %s: no such file or directory", cfg.HostIfName, cfg.NetNS)
	}
	delete(f.eps, cfg.HostIfName) // stale interface of the same name
	for _, name := range f.sortedNames() {
		ep := f.eps[name]
		if ep.cfg.NetNS == cfg.NetNS && ep.cfg.IfName == cfg.IfName {
			return endpoint.Result{}, fmt.Errorf("add endpoint %s: create veth: interface %s already exists in netns %s",
				cfg.HostIfName, cfg.IfName, cfg.NetNS)
		}
		for _, p := range hostPrefixes(cfg.Addrs) {
			if slices.Contains(hostPrefixes(ep.cfg.Addrs), p) {
				return endpoint.Result{}, fmt.Errorf("add endpoint %s: route to %s already exists on interface %s, not on %s",
					cfg.HostIfName, p, name, cfg.HostIfName)
			}
		}
	}
	f.next++
	res := endpoint.Result{
		HostIfName:       cfg.HostIfName,
		HostMAC:          endpoint.HostMAC,
		ContainerMAC:     fakeMAC(cfg.HostIfName),
		ContainerIfIndex: f.next + 1,
		Sandbox:          cfg.NetNS,
	}
	f.eps[cfg.HostIfName] = &fakeEP{cfg: cfg, res: res}
	return res, nil
}

// Del implements endpoint.Dataplane.
func (f *Fake) Del(ctx context.Context, containerID, ifName, netnsPath string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("Del", containerID+" "+ifName); err != nil {
		return err
	}
	if containerID == "" {
		return fmt.Errorf("delete endpoint: config ContainerID: must not be empty")
	}
	if ifName == "" {
		return fmt.Errorf("delete endpoint: config IfName: must not be empty")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete endpoint: %w", err)
	}
	name := endpoint.HostIfName(containerID, ifName)
	if _, ok := f.eps[name]; ok {
		delete(f.eps, name)
		return nil
	}
	for n, ep := range f.eps {
		if netnsPath != "" && ep.cfg.NetNS == netnsPath && ep.cfg.IfName == ifName {
			delete(f.eps, n)
		}
	}
	return nil
}

// Check implements endpoint.Dataplane.
func (f *Fake) Check(ctx context.Context, cfg endpoint.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("Check", cfg.ContainerID+" "+cfg.IfName); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("check endpoint: %w", err)
	}
	cfg = defaults(cfg)
	var problems []string
	ep, ok := f.eps[cfg.HostIfName]
	switch {
	case !ok:
		problems = append(problems, fmt.Sprintf("host interface %s does not exist", cfg.HostIfName))
	case ep.cfg.NetNS != cfg.NetNS || ep.cfg.IfName != cfg.IfName:
		problems = append(problems, fmt.Sprintf("container interface %s does not exist in %s", cfg.IfName, cfg.NetNS))
	default:
		have := hostPrefixes(ep.cfg.Addrs)
		for _, p := range hostPrefixes(cfg.Addrs) {
			if !slices.Contains(have, p) {
				problems = append(problems, fmt.Sprintf("host route to %s dev %s is missing", p, cfg.HostIfName))
			}
		}
		if ep.cfg.MTU != cfg.MTU {
			problems = append(problems, fmt.Sprintf("host interface %s has MTU %d, want %d", cfg.HostIfName, ep.cfg.MTU, cfg.MTU))
		}
	}
	if f.goneNS[cfg.NetNS] {
		problems = append(problems, fmt.Sprintf("container netns %s does not exist", cfg.NetNS))
	}
	if len(problems) > 0 {
		return fmt.Errorf("check endpoint %s (container %s %s): %s", cfg.HostIfName, cfg.ContainerID, cfg.IfName, strings.Join(problems, "; "))
	}
	return nil
}

// List implements endpoint.Dataplane.
func (f *Fake) List(ctx context.Context) ([]endpoint.HostEndpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("List", ""); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	var out []endpoint.HostEndpoint
	for _, name := range f.sortedNames() {
		ep := f.eps[name]
		out = append(out, endpoint.HostEndpoint{Name: name, Index: ep.res.ContainerIfIndex + 1000, Up: true, Addrs: hostPrefixes(ep.cfg.Addrs)})
	}
	return out, nil
}

// DeleteHostIf implements endpoint.Dataplane.
func (f *Fake) DeleteHostIf(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("DeleteHostIf", name); err != nil {
		return err
	}
	if !strings.HasPrefix(name, endpoint.HostIfPrefix) || len(name) <= len(endpoint.HostIfPrefix) || len(name) > 15 {
		return fmt.Errorf("delete host interface %q: not a workload interface (no %q prefix)", name, endpoint.HostIfPrefix)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete host interface %s: %w", name, err)
	}
	delete(f.eps, name)
	return nil
}
