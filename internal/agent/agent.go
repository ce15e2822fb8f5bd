// Package agent is the per-host Tabby daemon: it registers the Node, serves
// the CNI plugin over a unix socket (IPAM, veth wiring, policy, the
// WorkloadEndpoint), keeps the dataplane (nftables policy, routes) in step
// with the datastore, reconciles leftovers on start and collects leaked
// addresses. The kernel seams (endpoint wiring, policy driver, routing) are
// small interfaces so the CNI logic has fast unit tests with fakes.
//
// agent wires packages together; it must not be imported by them.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/agent/nodeip"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// Version is reported in the Node status; set by the command.
var Version = "dev"

// watchedKinds are the resources the agent mirrors.
var watchedKinds = []string{
	"Node", "IPPool", "IPAMConfig", "WorkloadEndpoint", "HostEndpoint", "Profile",
	"Tier", "NetworkPolicy", "GlobalNetworkPolicy", "NetworkSet", "GlobalNetworkSet",
	"FelixConfiguration", "BGPConfiguration", "BGPPeer", "IPReservation",
	"Namespace", "StagedNetworkPolicy", "StagedGlobalNetworkPolicy", "StagedKubernetesNetworkPolicy",
}

// Dataplane is the part of the agent that programs the kernel from the
// desired state: policy (nftables) and routes. Sync is idempotent.
type Dataplane interface {
	// Sync programs the kernel for the given view of the cluster.
	Sync(ctx context.Context, v *View) error
	// EndpointGone is called after a local endpoint is removed, to flush
	// its connection-tracking state.
	EndpointGone(ctx context.Context, addrs []netip.Addr)
}

// Agent is the node daemon. Build it with New; Run starts everything.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	store  datastore.Store
	client *datastore.Client
	ipam   *ipam.IPAM
	wirer  endpoint.Dataplane
	dp     Dataplane
	cache  *cache
	m      *metrics
	reaper *reaper // removes endpoints of containers that died without DEL
	// attach serialises ADD and DEL of one attachment.
	attach attachLocks
	// enableForwarding is the sysctl write Run makes (a seam for tests).
	enableForwarding func() error

	nodeIP    netip.Prefix
	uplinkMTU int // detected once at start; the workload MTU follows the pools

	pending    pendingEndpoints
	quarantine quarantineState
	syncReqs   chan chan error
	ready      atomic.Bool
	synced     atomic.Bool

	extraHandlers map[string]http.Handler
}

// Handle mounts an extra handler on the agent's HTTP server (e.g. routing
// status). Call it before Run.
func (a *Agent) Handle(pattern string, h http.Handler) {
	if a.extraHandlers == nil {
		a.extraHandlers = map[string]http.Handler{}
	}
	a.extraHandlers[pattern] = h
}

// New builds an agent; it starts nothing.
func New(cfg Config, store datastore.Store, wirer endpoint.Dataplane, dp Dataplane, log *slog.Logger) (*Agent, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "agent", "node", cfg.Node)
	client := datastore.NewClient(store)
	a := &Agent{
		cfg: cfg, log: log, store: store, client: client,
		wirer:            wirer,
		enableForwarding: enableIPForwarding,
		dp:               dp,
		cache:            newCache(client, watchedKinds, log.With("component", "agent-cache")),
		m:                newMetrics(),
		syncReqs:         make(chan chan error, 256),
		pending:          pendingEndpoints{m: map[string]*api.WorkloadEndpoint{}},
	}
	// IPAM takes the IPReservations from the watched cache: no datastore
	// read per allocation for them.
	m, err := ipam.NewWithConfig(store, log, ipam.Config{Reservations: func() []*api.IPReservation {
		return listOf[*api.IPReservation](a.cache, "IPReservation")
	}})
	if err != nil {
		return nil, err
	}
	a.ipam = m
	a.reaper = newReaper(a, kernelDeadKernel{})
	a.quarantine.dirty = make(chan struct{}, 1)
	a.cache.node = cfg.Node
	a.cache.onBad = func(b datastore.BadRecord) { a.m.badRecords.WithLabelValues(b.Kind).Inc() }
	return a, nil
}

// Run registers the node, reconciles, serves the socket and keeps the
// dataplane in sync until ctx ends. It returns after cleaning up its
// goroutines (the kernel state is left in place: restarting the agent
// never disturbs running containers).
func (a *Agent) Run(ctx context.Context) error {
	ip, err := a.detectNodeIP()
	if err != nil {
		return err
	}
	a.nodeIP = ip
	a.log.Info("starting", "nodeIP", ip, "socket", a.cfg.Socket, "version", Version)

	// Every goroutine Run starts is in wg, and every return waits for
	// them: the deferred cancel runs first, then the deferred wait.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1) // the first loop failure; later ones are dropped
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				select {
				case errc <- fmt.Errorf("%s: %w", name, err):
				default:
				}
			}
		})
	}

	if a.cfg.HTTPListen != "" {
		ln, err := net.Listen("tcp", a.cfg.HTTPListen)
		if err != nil {
			return fmt.Errorf("listen on %s for health and metrics: %w", a.cfg.HTTPListen, err)
		}
		httpSrv := &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Go(func() { _ = httpSrv.Serve(ln) })
		wg.Go(func() { <-ctx.Done(); _ = httpSrv.Close() }) // so Serve returns
	}

	if err := a.enableForwarding(); err != nil {
		return err
	}
	if err := a.registerNode(ctx); err != nil {
		return err
	}
	run("cache", a.cache.Run)
	select {
	case <-a.cache.ready:
	case <-ctx.Done():
		return nil
	}
	a.uplinkMTU = a.detectUplinkMTU()
	if err := a.reconcile(ctx); err != nil {
		a.log.Warn("reconcile on start incomplete", "error", err)
	}
	if err := a.syncDataplane(ctx); err != nil {
		a.log.Warn("first dataplane sync failed; will retry", "error", err)
	} else {
		a.synced.Store(true)
	}
	run("dataplane", a.dataplaneLoop)
	run("heartbeat", a.heartbeatLoop)
	run("gc", a.gcLoop)
	run("reaper", a.reaper.Run)

	ln, err := cni.Listen(a.cfg.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Socket, err)
	}
	srv := &http.Server{Handler: cni.NewHTTPHandler(a, a.log), ReadHeaderTimeout: 5 * time.Second, ConnContext: withCaller}
	wg.Go(func() { _ = srv.Serve(rootOnlyListener{Listener: ln, log: a.log}) })
	a.ready.Store(true)
	a.log.Info("ready", "socket", a.cfg.Socket, "mtu", a.workloadMTU())

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	a.ready.Store(false)
	shutCtx, c2 := context.WithTimeout(context.Background(), 10*time.Second)
	if srv.Shutdown(shutCtx) != nil {
		_ = srv.Close()
	}
	c2()
	_ = os.Remove(a.cfg.Socket)
	cancel()
	wg.Wait()
	a.log.Info("stopped")
	return err
}

func (a *Agent) detectNodeIP() (netip.Prefix, error) {
	if a.cfg.NodeIP.IsValid() {
		return a.cfg.NodeIP, nil
	}
	m, err := nodeip.Parse(a.cfg.NodeIPDetect)
	if err != nil {
		return netip.Prefix{}, err
	}
	p, err := nodeip.Detect(m, 4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("detect node IP: %w", err)
	}
	return p, nil
}

// detectUplinkMTU reads the MTU of the node's uplink (1500 when it cannot).
func (a *Agent) detectUplinkMTU() int {
	mtu, err := endpoint.DetectMTU(a.nodeIP.Addr())
	if err != nil || mtu == 0 {
		a.log.Warn("cannot detect the uplink MTU; using 1500", "error", err)
		return 1500
	}
	return mtu
}

// workloadMTU is the configured MTU, or the uplink's minus the overhead of
// the encapsulation the enabled pools use now (so new workloads follow a
// pool's change of mode without an agent restart).
func (a *Agent) workloadMTU() int {
	if a.cfg.MTU != 0 {
		return a.cfg.MTU
	}
	mtu := a.uplinkMTU
	if mtu == 0 {
		mtu = 1500
	}
	overhead := 0
	for _, p := range listOf[*api.IPPool](a.cache, "IPPool") {
		if p.Spec.Disabled {
			continue
		}
		if p.Spec.VXLANMode == api.EncapAlways || p.Spec.VXLANMode == api.EncapCrossSubnet {
			overhead = max(overhead, 50)
		}
		if p.Spec.IPIPMode == api.EncapAlways || p.Spec.IPIPMode == api.EncapCrossSubnet {
			overhead = max(overhead, 20)
		}
	}
	return mtu - overhead
}

// registerNode creates or updates this host's Node resource with compare-and-swap.
func (a *Agent) registerNode(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := a.writeNode(ctx, true)
		if err == nil {
			return nil
		}
		if attempt >= 50 || ctx.Err() != nil {
			return fmt.Errorf("register node %q: %w", a.cfg.Node, err)
		}
		a.log.Warn("register node failed; retrying", "error", err)
		if !sleepCtx(ctx, time.Second) {
			return ctx.Err()
		}
	}
}

// writeNode creates or updates this host's Node with compare-and-swap.
// The agent owns the Node's status; of its spec it writes only the
// addresses, and only at start (start true), where they are unset or where
// the agent was told its address (--node-ip). A heartbeat writes status
// alone, so an operator's edit of the spec (bgp addresses, orchRefs,
// labels) is never reverted.
func (a *Agent) writeNode(ctx context.Context, start bool) error {
	for range datastore.MaxRetries {
		cur, err := a.client.Get(ctx, "Node", "", a.cfg.Node)
		var n *api.Node
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			n = &api.Node{ObjectMeta: api.ObjectMeta{Name: a.cfg.Node}}
		case err != nil:
			return err
		default:
			n = cur.(*api.Node)
		}
		if start {
			a.nodeSpec(n)
		}
		n.Status.AgentVersion = Version
		n.Status.LastHeartbeat = time.Now().UTC().Format(time.RFC3339)
		n.Status.MTU = a.workloadMTU()
		n.Status.QuarantinedPolicies = a.quarantineStatus()
		if n.ResourceVersion == "" {
			_, err = a.client.Create(ctx, n)
			if errors.Is(err, datastore.ErrExists) {
				continue
			}
		} else {
			_, err = a.client.Update(ctx, n)
			if errors.Is(err, datastore.ErrConflict) {
				continue
			}
		}
		return err
	}
	return fmt.Errorf("%w (gave up after %d attempts)", datastore.ErrConflict, datastore.MaxRetries)
}

// nodeSpec fills in the addresses the agent detected or was given: where
// unset, or everywhere when the address came from the agent's own
// configuration.
func (a *Agent) nodeSpec(n *api.Node) {
	told := a.cfg.NodeIP.IsValid()
	if n.Spec.BGP == nil {
		n.Spec.BGP = &api.NodeBGPSpec{}
	}
	if n.Spec.BGP.IPv4Address == "" || told {
		n.Spec.BGP.IPv4Address = a.nodeIP.String()
	}
	if a.cfg.NodeIPv6.IsValid() && (n.Spec.BGP.IPv6Address == "" || told) {
		n.Spec.BGP.IPv6Address = a.cfg.NodeIPv6.String()
	}
	if len(n.Spec.Addresses) == 0 || told {
		n.Spec.Addresses = []api.NodeAddress{{Address: a.nodeIP.String(), Type: "CalicoNodeIP"}}
	}
}

func (a *Agent) heartbeatLoop(ctx context.Context) error {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.quarantine.dirty: // the status changed: write it now
		}
		if err := a.writeNode(ctx, false); err != nil && ctx.Err() == nil {
			a.log.Warn("heartbeat failed", "error", err)
		}
	}
}

// enableIPForwarding turns on IP forwarding in the host's network namespace:
// container traffic is routed through it.
func enableIPForwarding() error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	// IPv6 may be disabled on the host; then there is nothing to forward.
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0o644)
	return nil
}
