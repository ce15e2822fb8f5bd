package agent

import (
	"context"
	"errors"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// ipamOnlyType marks allocations made for the tabby-ipam plugin type: they
// have no WorkloadEndpoint and are released by CNI DEL or GC only.
const ipamOnlyType = "ipamOnly"

// reconcile runs before the socket is served (so no ADD is in flight) and
// removes what belongs to no live container: endpoints whose veth is gone,
// veths without an endpoint (an ADD interrupted by a crash), and addresses
// held by no endpoint. It logs everything it removes.
func (a *Agent) reconcile(ctx context.Context) error {
	var errs []error
	ifs, err := a.wirer.List(ctx)
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, h := range ifs {
		present[h.Name] = true
	}
	used := map[string]bool{}
	live := map[string]bool{}
	for _, w := range listOf[*api.WorkloadEndpoint](a.cache, "WorkloadEndpoint") {
		if w.Spec.Node != a.cfg.Node {
			continue
		}
		if !present[w.Spec.InterfaceName] {
			a.log.Info("reconcile: removing endpoint whose interface is gone", "endpoint", w.Name, "interface", w.Spec.InterfaceName, "containerID", w.Spec.ContainerID)
			if _, err := a.ipam.ReleaseHandle(ctx, w.Spec.IPAMHandle); err != nil {
				errs = append(errs, err)
				continue
			}
			if _, err := a.client.Delete(ctx, "WorkloadEndpoint", w.Namespace, w.Name, ""); err != nil && !errors.Is(err, datastore.ErrNotFound) {
				errs = append(errs, err)
				continue
			}
			a.cache.remove("WorkloadEndpoint", w)
			continue
		}
		used[w.Spec.InterfaceName] = true
		live[w.Spec.IPAMHandle] = true
		a.m.endpoints.Inc()
	}
	for _, h := range ifs {
		if used[h.Name] {
			continue
		}
		a.log.Info("reconcile: removing interface of no endpoint", "interface", h.Name, "addrs", h.Addrs)
		if err := a.wirer.DeleteHostIf(ctx, h.Name); err != nil {
			errs = append(errs, err)
		}
	}
	handles, err := a.ipam.NodeHandles(ctx, a.cfg.Node)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, h := range sortedKeys(handles) {
		if live[h] || handles[h] == ipamOnlyType || strings.HasPrefix(h, ipam.VXLANTunnelHandlePrefix) || strings.HasPrefix(h, ipam.IPIPTunnelHandlePrefix) {
			continue
		}
		a.log.Info("reconcile: releasing addresses held by no endpoint", "handle", h)
		if _, err := a.ipam.ReleaseHandle(ctx, h); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// gcLoop periodically releases leaked addresses (see ipamGC): this
// node's blocks on every agent, the cluster-wide work on the elected one.
// Every write is compare-and-swap, so agents collecting at once are safe.
func (a *Agent) gcLoop(ctx context.Context) error {
	return a.newIPAMGC().Run(ctx)
}

// deleteOrphanEndpoints deletes the WorkloadEndpoints of deleted nodes
// whose addresses GC has released. Left behind, such an endpoint lists an
// address the pool hands to the next container, which every host's policy
// would then treat as the dead workload (its labels, its sets) and DNS
// would still name. An endpoint goes only once its node is gone and its
// handle holds no address, so GC's grace period protects it as it protects
// the addresses. The elected agent does it after its cluster-wide pass;
// the deletes are compare-and-swap.
func (a *Agent) deleteOrphanEndpoints(ctx context.Context) {
	nodes := map[string]bool{}
	for _, n := range listOf[*api.Node](a.cache, "Node") {
		nodes[n.Name] = true
	}
	if len(nodes) == 0 {
		return // as GC: no Node at all is more likely a misconfiguration
	}
	for _, w := range listOf[*api.WorkloadEndpoint](a.cache, "WorkloadEndpoint") {
		if w.Spec.Node == "" || nodes[w.Spec.Node] || w.Spec.IPAMHandle == "" {
			continue
		}
		addrs, err := a.ipam.HandleAddrs(ctx, w.Spec.IPAMHandle)
		if err != nil || len(addrs) > 0 {
			continue
		}
		_, err = a.client.Delete(ctx, "WorkloadEndpoint", w.Namespace, w.Name, w.ResourceVersion)
		switch {
		case err == nil:
			a.log.Info("deleted the endpoint of a deleted node", "endpoint", w.Name, "namespace", w.Namespace, "node", w.Spec.Node)
		case errors.Is(err, datastore.ErrNotFound), errors.Is(err, datastore.ErrConflict):
		default:
			if ctx.Err() == nil {
				a.log.Warn("delete the endpoint of a deleted node", "endpoint", w.Name, "node", w.Spec.Node, "error", err)
			}
		}
	}
}
