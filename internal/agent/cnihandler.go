package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

var _ cni.Handler = (*Agent)(nil)

// Labels Tabby adds to every WorkloadEndpoint (as Calico does).
const (
	LabelNamespace    = "projectcalico.org/namespace"
	LabelOrchestrator = "projectcalico.org/orchestrator"
)

func (a *Agent) identity(req *cni.Request) (*cni.Identity, error) {
	id := req.Identity
	if id == nil {
		var err error
		if id, err = cni.IdentityFor(req); err != nil {
			return nil, err
		}
	}
	if id.Node != "" && id.Node != a.cfg.Node {
		return nil, cni.Errorf(types.ErrInvalidNetworkConfig, "nodename: %q is not this agent's node %q", id.Node, a.cfg.Node)
	}
	return id, nil
}

func (a *Agent) endpointName(id *cni.Identity) string {
	return api.WorkloadEndpointName(a.cfg.Node, id.Orchestrator, id.Workload, id.InterfaceName)
}

// Add attaches a container: IPAM, policy, veth, WorkloadEndpoint. Any
// failure undoes the earlier steps in reverse.
func (a *Agent) Add(ctx context.Context, req *cni.Request) (res *types100.Result, err error) {
	start := time.Now()
	defer func() { a.m.observe("ADD", start, err) }()
	if !a.ready.Load() {
		return nil, cni.Errorf(types.ErrTryAgainLater, "tabby agent on %s is still starting; try again", a.cfg.Node)
	}
	id, err := a.identity(req)
	if err != nil {
		return nil, err
	}
	unlock, err := a.attach.lock(ctx, id.IPAMHandle)
	if err != nil {
		return nil, cni.Errorf(types.ErrTryAgainLater, "wait for another operation on %s: %v", id.IPAMHandle, err)
	}
	defer unlock()
	if req.Mode == cni.ModeIPAM {
		return a.addIPAMOnly(ctx, req, id)
	}
	if req.NetNS == "" {
		return nil, cni.Errorf(types.ErrInvalidEnvironmentVariables, "CNI_NETNS: required for ADD")
	}
	defer a.reaper.holdAdd(id.IPAMHandle)() // no reaping of this handle meanwhile
	nsPath, release := callerNetNS(ctx, req.NetNS)
	defer release()
	conf := req.NetConf
	name := a.endpointName(id)
	hostIf := endpoint.HostIfName(id.ContainerID, id.InterfaceName)

	// Re-ADD of the same attachment returns the same addresses.
	if r, ok := a.cache.get("WorkloadEndpoint", id.Namespace, name); ok {
		w := r.(*api.WorkloadEndpoint)
		if w.Spec.ContainerID == id.ContainerID && w.Spec.IPAMHandle == id.IPAMHandle {
			if cerr := a.wirer.Check(ctx, a.wireConfig(req, id, w, nsPath)); cerr == nil {
				return a.result(req, w, hostIf), nil
			}
		}
	}

	// 1. Addresses.
	ipReq := ipam.Request{
		Handle: id.IPAMHandle, Node: a.cfg.Node,
		Attrs: ipam.Attributes{Node: a.cfg.Node, Namespace: id.Namespace, Workload: id.Workload,
			ContainerID: id.ContainerID, Network: id.Network, IfName: id.InterfaceName},
		Static: id.RequestedIPs,
	}
	a.requestFamilies(&conf.IPAM, &ipReq)
	tIPAM := time.Now()
	allocs, err := a.ipam.Allocate(ctx, ipReq)
	if err != nil {
		return nil, ipamError(err)
	}
	dIPAM := time.Since(tIPAM)
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	undo = append(undo, func() {
		if _, rerr := a.ipam.ReleaseHandle(context.WithoutCancel(ctx), id.IPAMHandle); rerr != nil {
			a.log.Error("undo ADD: release addresses failed", "handle", id.IPAMHandle, "error", rerr)
		}
	})

	// 2. The network's profile exists before the endpoint uses it.
	if err = a.ensureProfile(ctx, id.Network); err != nil {
		return nil, cni.Errorf(types.ErrTryAgainLater, "create profile %q: %v", id.Network, err)
	}

	// 3. Policy for the interface before the interface exists.
	w := a.buildEndpoint(id, name, hostIf, allocs)
	w.Spec.NetNS = req.NetNS // how the reaper tells a dead container from a broken interface
	a.pending.add(w)
	a.cache.notePending(w, true)
	defer func() {
		a.pending.done(w)
		a.cache.notePending(w, false)
	}()
	tPolicy := time.Now()
	if err = a.requestSync(ctx); err != nil {
		return nil, cni.Errorf(types.ErrInternal, "program policy for %s: %v", hostIf, err)
	}

	// 4. The veth.
	tWire := time.Now()
	dPolicy := tWire.Sub(tPolicy)
	wres, err := a.wirer.Add(ctx, a.wireConfig(req, id, w, nsPath))
	if err != nil {
		return nil, cni.Errorf(types.ErrInternal, "wire %s: %v", hostIf, err)
	}
	undo = append(undo, func() {
		if derr := a.wirer.Del(context.WithoutCancel(ctx), id.ContainerID, id.InterfaceName, nsPath); derr != nil {
			a.log.Error("undo ADD: remove veth failed", "interface", hostIf, "error", derr)
		}
	})
	// A new object, not an edit: the pending one is read by the dataplane
	// loop meanwhile, and policy's entity cache keys on the object.
	wired := *w
	wired.Spec.MAC = wres.ContainerMAC
	w = &wired

	// 5. The WorkloadEndpoint.
	tStore := time.Now()
	dWire := tStore.Sub(tWire)
	if err = a.writeEndpoint(ctx, w); err != nil {
		return nil, cni.Errorf(types.ErrTryAgainLater, "write endpoint %s: %v", name, err)
	}
	a.m.endpoints.Inc()
	a.log.Info("container attached", "endpoint", name, "containerID", id.ContainerID, "ips", w.Spec.IPNetworks, "interface", hostIf,
		"took", time.Since(start), "ipam", dIPAM, "policy", dPolicy, "wire", dWire, "store", time.Since(tStore))
	res = a.result(req, w, hostIf)
	res.Interfaces[0].Mac = wres.HostMAC
	return res, nil
}

// wireConfig is the kernel side of an attachment; nsPath is the container's
// namespace as the agent reaches it (callerNetNS).
func (a *Agent) wireConfig(req *cni.Request, id *cni.Identity, w *api.WorkloadEndpoint, nsPath string) endpoint.Config {
	mtu := a.workloadMTU()
	if req.NetConf != nil && req.NetConf.MTU > 0 {
		mtu = req.NetConf.MTU
	}
	var addrs []netip.Prefix
	for _, n := range w.Spec.IPNetworks {
		if p, err := netip.ParsePrefix(n); err == nil {
			addrs = append(addrs, p)
		}
	}
	return endpoint.Config{ContainerID: id.ContainerID, IfName: id.InterfaceName, NetNS: nsPath, Addrs: addrs, MTU: mtu}
}

// buildEndpoint is the WorkloadEndpoint of an attachment.
func (a *Agent) buildEndpoint(id *cni.Identity, name, hostIf string, allocs []ipam.Allocation) *api.WorkloadEndpoint {
	labels := map[string]string{}
	for k, v := range id.Labels {
		labels[k] = v
	}
	labels[LabelNamespace] = id.Namespace
	labels[LabelOrchestrator] = id.Orchestrator
	w := &api.WorkloadEndpoint{
		ObjectMeta: api.ObjectMeta{Name: name, Namespace: id.Namespace, Labels: labels},
		Spec: api.WorkloadEndpointSpec{
			Orchestrator:  id.Orchestrator,
			Workload:      id.Workload,
			Node:          a.cfg.Node,
			ContainerID:   id.ContainerID,
			Pod:           id.Pod,
			Endpoint:      id.InterfaceName,
			InterfaceName: hostIf,
			Profiles:      []string{id.Network},
			Network:       id.Network,
			IPAMHandle:    id.IPAMHandle,
		},
	}
	for _, al := range allocs {
		w.Spec.IPNetworks = append(w.Spec.IPNetworks, netip.PrefixFrom(al.Addr, al.Addr.BitLen()).String())
	}
	for _, p := range id.Ports {
		w.Spec.Ports = append(w.Spec.Ports, api.WorkloadEndpointPort{
			Name: p.Name, Protocol: api.Protocol(p.Protocol).Canonical(), Port: p.Port, HostPort: p.HostPort, HostIP: p.HostIP,
		})
	}
	return w
}

// writeEndpoint creates the WorkloadEndpoint (one round trip), or
// replaces it when one of that name is left from an earlier container.
//
// The written endpoint goes into the cache at its revision at once: ADD's
// pending mark ends when ADD returns, and a sync between then and the
// watch's delivery would otherwise find the endpoint in neither place and
// remove its policy and anti-spoofing entries from a running container.
func (a *Agent) writeEndpoint(ctx context.Context, w *api.WorkloadEndpoint) error {
	c := *w
	written, err := a.client.Create(ctx, &c)
	if errors.Is(err, datastore.ErrExists) {
		c = *w
		written, _, err = a.client.Apply(ctx, &c)
	}
	if err != nil {
		return err
	}
	if rev, perr := strconv.ParseInt(written.GetObjectMeta().ResourceVersion, 10, 64); perr == nil {
		a.cache.putWritten("WorkloadEndpoint", written, rev)
	}
	return nil
}

// ensureProfile creates the network's default profile if it is missing:
// ingress from the same network, egress allowed. It is never updated
// afterwards, so operators may edit it.
func (a *Agent) ensureProfile(ctx context.Context, network string) error {
	if _, ok := a.cache.get("Profile", "", network); ok {
		return nil
	}
	p := &api.Profile{
		ObjectMeta: api.ObjectMeta{Name: network},
		Spec: api.ProfileSpec{
			Ingress:       []api.Rule{{Action: api.ActionAllow, Source: api.EntityRule{Selector: fmt.Sprintf("has(%s)", network)}}},
			Egress:        []api.Rule{{Action: api.ActionAllow}},
			LabelsToApply: map[string]string{network: ""},
		},
	}
	_, err := a.client.Create(ctx, p)
	if errors.Is(err, datastore.ErrExists) {
		return nil
	}
	if err == nil {
		a.cache.put("Profile", p)
		a.log.Info("created default profile", "profile", network)
	}
	return err
}

// result builds the CNI result (current version; the plugin converts it).
func (a *Agent) result(req *cni.Request, w *api.WorkloadEndpoint, hostIf string) *types100.Result {
	res := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{
			{Name: hostIf, Mac: "ee:ee:ee:ee:ee:ee"},
			{Name: w.Spec.Endpoint, Mac: w.Spec.MAC, Sandbox: req.NetNS},
		},
	}
	has4, has6 := false, false
	for _, n := range w.Spec.IPNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			continue
		}
		res.IPs = append(res.IPs, &types100.IPConfig{Interface: types100.Int(1), Address: prefixNet(p)})
		has4 = has4 || p.Addr().Is4()
		has6 = has6 || p.Addr().Is6()
	}
	if has4 {
		res.Routes = append(res.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}})
	}
	if has6 {
		res.Routes = append(res.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}})
	}
	if req.NetConf != nil {
		res.DNS = req.NetConf.DNS
	}
	return res
}

func prefixNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// addIPAMOnly serves the tabby-ipam plugin type: addresses, no wiring.
func (a *Agent) addIPAMOnly(ctx context.Context, req *cni.Request, id *cni.Identity) (*types100.Result, error) {
	conf := req.NetConf
	r := ipam.Request{
		Handle: id.IPAMHandle, Node: a.cfg.Node, Static: id.RequestedIPs,
		Attrs: ipam.Attributes{Node: a.cfg.Node, Namespace: id.Namespace, Workload: id.Workload,
			ContainerID: id.ContainerID, Network: id.Network, IfName: id.InterfaceName, Type: "ipamOnly"},
	}
	a.requestFamilies(&conf.IPAM, &r)
	allocs, err := a.ipam.Allocate(ctx, r)
	if err != nil {
		return nil, ipamError(err)
	}
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion, DNS: conf.DNS}
	for _, al := range allocs {
		res.IPs = append(res.IPs, &types100.IPConfig{Address: prefixNet(netip.PrefixFrom(al.Addr, al.Addr.BitLen()))})
	}
	return res, nil
}

func ipamError(err error) error {
	var ce *cni.Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, datastore.ErrUnavailable) {
		return cni.Errorf(types.ErrTryAgainLater, "allocate addresses: %v", err)
	}
	return cni.Errorf(types.ErrInternal, "allocate addresses: %v", err)
}

// Del detaches a container. It is idempotent and succeeds without a netns.
func (a *Agent) Del(ctx context.Context, req *cni.Request) (err error) {
	start := time.Now()
	defer func() { a.m.observe("DEL", start, err) }()
	id, err := a.identity(req)
	if err != nil {
		return err
	}
	// A DEL that arrives while the ADD of the same attachment still runs
	// waits for it, then removes what it made.
	unlock, err := a.attach.lock(ctx, id.IPAMHandle)
	if err != nil {
		return cni.Errorf(types.ErrTryAgainLater, "wait for another operation on %s: %v", id.IPAMHandle, err)
	}
	defer unlock()
	if req.Mode == cni.ModeIPAM {
		_, err := a.ipam.ReleaseHandle(ctx, id.IPAMHandle)
		if err != nil {
			return ipamError(err)
		}
		return nil
	}
	nsPath, release := callerNetNS(ctx, req.NetNS)
	defer release()
	return a.removeEndpoint(ctx, id.Namespace, a.endpointName(id), id.ContainerID, id.InterfaceName, nsPath, id.IPAMHandle)
}

// removeEndpoint undoes an attachment: veth first (so the address carries
// no more traffic), conntrack, policy, then the addresses and the endpoint.
func (a *Agent) removeEndpoint(ctx context.Context, namespace, name, containerID, ifName, netns, handle string) error {
	var addrs []netip.Addr
	if r, ok := a.cache.get("WorkloadEndpoint", namespace, name); ok {
		w := r.(*api.WorkloadEndpoint)
		if w.Spec.ContainerID != containerID && containerID != "" {
			// A newer container holds this endpoint name; leave it alone
			// but still release what the old one may hold.
			if err := a.wirer.Del(ctx, containerID, ifName, netns); err != nil {
				return cni.Errorf(types.ErrInternal, "remove veth: %v", err)
			}
			_, err := a.ipam.ReleaseHandle(ctx, handle)
			return err
		}
		for _, n := range w.Spec.IPNetworks {
			if p, err := netip.ParsePrefix(n); err == nil {
				addrs = append(addrs, p.Addr())
			}
		}
	}
	if err := a.wirer.Del(ctx, containerID, ifName, netns); err != nil {
		return cni.Errorf(types.ErrInternal, "remove veth: %v", err)
	}
	if a.dp != nil && len(addrs) > 0 {
		a.dp.EndpointGone(ctx, addrs)
	}
	// The addresses and the endpoint record go in parallel: two round trips
	// to the datastore that do not depend on each other.
	relErr := make(chan error, 1)
	go func() {
		_, err := a.ipam.ReleaseHandle(ctx, handle)
		relErr <- err
	}()
	// The record goes only while it is still this container's: a newer
	// container may have taken the name since the cache was filled (a
	// late DEL must never remove it).
	_, delErr := a.client.DeleteIf(ctx, "WorkloadEndpoint", namespace, name, func(r api.Resource) bool {
		return ownedBy(r, containerID)
	})
	if err := <-relErr; err != nil {
		return ipamError(err)
	}
	if delErr != nil {
		return cni.Errorf(types.ErrTryAgainLater, "delete endpoint %s: %v", name, delErr)
	}
	// The veth is gone, so nothing can use the endpoint's chains any more:
	// the dataplane loop removes them without making DEL wait.
	if r, ok := a.cache.get("WorkloadEndpoint", namespace, name); ok && ownedBy(r, containerID) {
		a.cache.remove("WorkloadEndpoint", r)
		a.m.endpoints.Dec()
	} else {
		a.cache.signal()
	}
	a.log.Info("container detached", "endpoint", name, "containerID", containerID)
	return nil
}

// ownedBy says whether an endpoint record belongs to the container (any
// container, when DEL names none).
func ownedBy(r api.Resource, containerID string) bool {
	return containerID == "" || r.(*api.WorkloadEndpoint).Spec.ContainerID == containerID
}

// Check verifies that the attachment is as ADD left it.
func (a *Agent) Check(ctx context.Context, req *cni.Request) (err error) {
	start := time.Now()
	defer func() { a.m.observe("CHECK", start, err) }()
	id, err := a.identity(req)
	if err != nil {
		return err
	}
	addrs, err := a.ipam.HandleAddrs(ctx, id.IPAMHandle)
	if err != nil {
		return ipamError(err)
	}
	if len(addrs) == 0 {
		return cni.Errorf(types.ErrInternal, "no addresses are allocated to %s", id.IPAMHandle)
	}
	if req.Mode == cni.ModeIPAM {
		return nil
	}
	name := a.endpointName(id)
	r, ok := a.cache.get("WorkloadEndpoint", id.Namespace, name)
	if !ok {
		got, gerr := a.client.Get(ctx, "WorkloadEndpoint", id.Namespace, name)
		if gerr != nil {
			return cni.Errorf(types.ErrInternal, "endpoint %s: %v", name, gerr)
		}
		r = got
	}
	w := r.(*api.WorkloadEndpoint)
	if w.Spec.ContainerID != id.ContainerID {
		return cni.Errorf(types.ErrInternal, "endpoint %s belongs to container %s, not %s", name, w.Spec.ContainerID, id.ContainerID)
	}
	want := map[string]bool{}
	for _, ad := range addrs {
		want[netip.PrefixFrom(ad, ad.BitLen()).String()] = true
	}
	for _, n := range w.Spec.IPNetworks {
		if !want[n] {
			return cni.Errorf(types.ErrInternal, "endpoint %s has %s, which IPAM does not hold for it", name, n)
		}
	}
	nsPath, release := callerNetNS(ctx, req.NetNS)
	defer release()
	if err := a.wirer.Check(ctx, a.wireConfig(req, id, w, nsPath)); err != nil {
		return cni.Errorf(types.ErrInternal, "%v", err)
	}
	return nil
}

// GC removes this node's attachments of the network that are not in the
// runtime's list of valid attachments (CNI 1.1).
func (a *Agent) GC(ctx context.Context, req *cni.Request) (err error) {
	start := time.Now()
	defer func() { a.m.observe("GC", start, err) }()
	if req.NetConf == nil {
		return cni.Errorf(types.ErrInvalidNetworkConfig, "GC without a network config")
	}
	network := req.NetConf.Name
	valid := map[string]bool{}
	for _, at := range req.ValidAttachments {
		valid[at.ContainerID+"/"+at.IfName] = true
	}
	var errs []error
	for _, w := range listOf[*api.WorkloadEndpoint](a.cache, "WorkloadEndpoint") {
		if w.Spec.Node != a.cfg.Node || w.Spec.Network != network || valid[w.Spec.ContainerID+"/"+w.Spec.Endpoint] {
			continue
		}
		a.log.Info("GC: removing attachment the runtime no longer has", "endpoint", w.Name, "containerID", w.Spec.ContainerID)
		if err := a.removeEndpoint(ctx, w.Namespace, w.Name, w.Spec.ContainerID, w.Spec.Endpoint, "", w.Spec.IPAMHandle); err != nil {
			errs = append(errs, err)
		}
	}
	// Addresses of this network held by handles of no valid attachment
	// (tabby-ipam allocations, or an ADD that died before its endpoint).
	handles, err := a.ipam.NodeHandles(ctx, a.cfg.Node)
	if err != nil {
		errs = append(errs, err)
	}
	live := a.liveHandles()
	for _, h := range sortedKeys(handles) {
		cid, ifName, ok := splitHandle(h, network)
		if !ok || valid[cid+"/"+ifName] || live[h] {
			continue
		}
		a.log.Info("GC: releasing addresses of a gone attachment", "handle", h)
		if _, err := a.ipam.ReleaseHandle(ctx, h); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cni.Errorf(types.ErrTryAgainLater, "GC: %v", err)
	}
	return nil
}

// statusTimeout bounds the datastore reads of one STATUS, well inside
// the plugin's own STATUS timeout (cni.DefaultStatusTimeout).
const statusTimeout = 3 * time.Second

// Status reports whether the agent can serve an ADD of the request's
// network config now (CNI 1.1): it fails with code 50 ("plugin not
// available") while the agent starts, when the datastore does not answer
// within statusTimeout, and when no usable pool has a free address for a
// family the config asks for. The address check plans the ADD without
// writing (ipam.Available): with a free address in one of the node's own
// blocks it reads nothing, so STATUS costs one datastore read.
func (a *Agent) Status(ctx context.Context, req *cni.Request) error {
	if !a.ready.Load() {
		return cni.Errorf(types.ErrPluginNotAvailable, "tabby agent on %s is starting", a.cfg.Node)
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	// One linearizable read: the node's own key (absent is fine).
	probe := datastore.ResourceKey((&api.Node{}).KindInfo(), "", a.cfg.Node)
	if _, err := a.store.Get(ctx, probe); err != nil && !errors.Is(err, datastore.ErrNotFound) {
		return cni.Errorf(types.ErrPluginNotAvailable, "tabby agent on %s cannot reach the datastore: %v", a.cfg.Node, err)
	}
	r := ipam.Request{Node: a.cfg.Node}
	var ipc *cni.IPAMConf
	if req.NetConf != nil {
		ipc = &req.NetConf.IPAM
	}
	a.requestFamilies(ipc, &r)
	if err := a.ipam.Available(ctx, r); err != nil {
		hint := ""
		if !errors.Is(err, ipam.ErrExhausted) && !errors.Is(err, datastore.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			hint = "; create or enable an IP pool with tabby apply"
		}
		return cni.Errorf(types.ErrPluginNotAvailable, "tabby agent on %s cannot serve ADD: %v%s", a.cfg.Node, err, hint)
	}
	return nil
}

// liveHandles are the IPAM handles of this node's endpoints in the cache.
func (a *Agent) liveHandles() map[string]bool {
	live := map[string]bool{}
	for _, w := range listOf[*api.WorkloadEndpoint](a.cache, "WorkloadEndpoint") {
		if w.Spec.IPAMHandle != "" {
			live[w.Spec.IPAMHandle] = true
		}
	}
	return live
}

// splitHandle reads <network>.<containerID>.<ifname>.
func splitHandle(h, network string) (containerID, ifName string, ok bool) {
	rest, found := strings.CutPrefix(h, network+".")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, ".")
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
