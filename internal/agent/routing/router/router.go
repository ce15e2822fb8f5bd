// Package router owns the goroutines of a host's routing: it mirrors the
// IPAM affinities from the datastore, takes the agent's view of the
// resources (Update), computes the plan (routing.Desired), runs the BGP
// speaker with the plan's sessions and adverts, allocates the host's tunnel
// addresses, and programs the kernel with the plan's routes plus the routes
// learned over BGP. It serves its state for `tabby node status`.
//
// After a start it keeps the Tabby routes already in the kernel (no
// deletions) until BGP has re-learned the routes — every session up and
// its End-of-RIB received — or Config.SyncTimeout has passed, so an agent
// restart never flaps a route.
//
// This package imports routing, its kernel and bgp subpackages, ipam and
// the datastore; it must not import internal/agent (the agent calls it).
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/agent/routing/bgp"
	"github.com/tabbynet/tabby/internal/agent/routing/kernel"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// Kernel programs routes and devices (the kernel package's Driver, or a
// fake in tests).
type Kernel interface {
	Apply(ks *routing.KernelState, opts kernel.ApplyOptions) (kernel.Report, error)
	EnableForwarding() error
}

// Speaker is the BGP speaker (the bgp package's Speaker, or a fake).
type Speaker interface {
	Run(ctx context.Context) error
	Apply(ctx context.Context, cfg *bgp.Config) error
	Best() ([]bgp.Path, error)
	Peers(ctx context.Context) ([]bgp.PeerStatus, error)
	Changed() <-chan struct{}
}

var (
	_ Kernel  = (*kernel.Driver)(nil)
	_ Speaker = (*bgp.Speaker)(nil)
)

// Defaults of Config.
const (
	DefaultResyncInterval = 30 * time.Second
	DefaultSyncTimeout    = 30 * time.Second
	DefaultRetryInterval  = time.Second
)

// Config configures a Router; flags are merged into it by the command.
type Config struct {
	// Node is this host's name.
	Node string
	// DisableBGP runs no BGP speaker: VXLAN pools still work (their routes
	// come from the datastore), other pools need another way to route.
	DisableBGP bool
	// ResyncInterval is how often the kernel is re-checked even when
	// nothing changed (repairing drift).
	ResyncInterval time.Duration
	// SyncTimeout bounds how long after a start stale routes are kept
	// while BGP re-learns them.
	SyncTimeout time.Duration
	// RetryInterval is the first delay before retrying a failed pass.
	RetryInterval time.Duration
	// BGP tunes the speaker (restart time, timers).
	BGP bgp.Options
	// Kernel and Speaker replace the real ones (tests); nil: a kernel
	// driver for the process's namespace and a GoBGP speaker.
	Kernel  Kernel
	Speaker Speaker
}

func (c Config) withDefaults() Config {
	if c.ResyncInterval == 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = DefaultSyncTimeout
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	return c
}

// Validate checks the config.
func (c Config) Validate() error {
	var errs []error
	if c.Node == "" {
		errs = append(errs, errors.New("router: node is required"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"resyncInterval", c.ResyncInterval}, {"syncTimeout", c.SyncTimeout}, {"retryInterval", c.RetryInterval}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("router: %s %s is negative", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// Router is one host's routing. Build it with New; Run starts it.
type Router struct {
	cfg     Config
	log     *slog.Logger
	store   datastore.Store
	client  *datastore.Client
	ipam    *ipam.IPAM
	kernel  Kernel
	speaker Speaker
	mirror  *mirror
	kickc   chan struct{}

	mu     sync.Mutex
	input  *routing.Input
	status Status

	started time.Time
	synced  bool // BGP has re-learned the routes after the start

	bfdTransitions *prometheus.CounterVec
}

// New builds a router; it starts nothing (the kernel driver opens its
// netlink socket in Run).
func New(cfg Config, store datastore.Store, log *slog.Logger) (*Router, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "router", "node", cfg.Node)
	r := &Router{
		cfg: cfg, log: log, store: store,
		client:  datastore.NewClient(store),
		ipam:    ipam.New(store, log),
		kernel:  cfg.Kernel,
		speaker: cfg.Speaker,
		kickc:   make(chan struct{}, 1),
		bfdTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tabby_bgp_bfd_transitions_total", Help: "BFD session state changes of this host's BGP sessions, by the state entered (Up, Down, Init, AdminDown).",
		}, []string{"state"}),
	}
	r.status.Node = cfg.Node
	r.mirror = newMirror(store, log, r.kick)
	return r, nil
}

// Collectors are the router's metrics, for the agent's registry.
func (r *Router) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.bfdTransitions}
}

// Update hands the router the agent's latest view of the resources. It
// never blocks; the router works on the newest input it has.
func (r *Router) Update(in *routing.Input) {
	if in == nil {
		return
	}
	c := *in
	c.Node = r.cfg.Node
	r.mu.Lock()
	r.input = &c
	r.mu.Unlock()
	r.kick()
}

func (r *Router) kick() {
	select {
	case r.kickc <- struct{}{}:
	default:
	}
}

// Run programs routes until ctx ends. The kernel state is left in place
// when it returns, and the BGP speaker stops gracefully, so peers keep
// this host's routes while it restarts.
func (r *Router) Run(ctx context.Context) error {
	if r.kernel == nil {
		d, err := kernel.New(kernel.Options{Log: r.log})
		if err != nil {
			return err
		}
		defer d.Close()
		r.kernel = d
	}
	if r.speaker == nil {
		o := r.cfg.BGP
		o.Log = r.log
		next := o.OnBFDTransition
		o.OnBFDTransition = func(peer netip.Addr, from, to string) {
			r.bfdTransitions.WithLabelValues(to).Inc()
			if next != nil {
				next(peer, from, to)
			}
		}
		r.speaker = bgp.New(o)
	}
	if err := r.kernel.EnableForwarding(); err != nil {
		return err
	}
	r.started = time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range []func(context.Context) error{r.mirror.Run, r.speaker.Run, r.loop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				r.log.Error("routing stopped", "error", err)
				cancel()
			}
		}()
	}
	wg.Wait()
	r.log.Info("stopped; kernel routes left in place")
	return nil
}

// loop runs a pass on every change, periodically, and after failures.
func (r *Router) loop(ctx context.Context) error {
	resync := time.NewTicker(r.cfg.ResyncInterval)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	delay := r.cfg.RetryInterval
	syncCheck := time.NewTimer(r.cfg.SyncTimeout)
	defer syncCheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kickc:
		case <-r.speaker.Changed():
		case <-resync.C:
		case <-retry.C:
		case <-syncCheck.C:
		}
		if err := r.pass(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("routing pass failed; retrying", "error", err, "in", delay)
			retry.Reset(delay)
			delay = min(delay*2, 30*time.Second)
			continue
		}
		delay = r.cfg.RetryInterval
		if !r.synced {
			// Check again soon: End-of-RIB may arrive without a path change.
			syncCheck.Reset(time.Second)
		}
	}
}

// pass computes the plan and applies it to the speaker and the kernel.
func (r *Router) pass(ctx context.Context) error {
	r.mu.Lock()
	in := r.input
	r.mu.Unlock()
	if in == nil {
		return nil // no view from the agent yet: change nothing
	}
	blocks, borrowed, ok := r.mirror.snapshot()
	if !ok {
		return nil // IPAM not read yet: change nothing
	}
	full := *in
	full.Blocks, full.Borrowed = blocks, borrowed
	full.DisableBGP = full.DisableBGP || r.cfg.DisableBGP
	plan := routing.Desired(&full)

	var errs []error
	if err := r.ensureTunnels(ctx, &full, plan); err != nil {
		errs = append(errs, err)
	}
	bcfg, problems := r.bgpConfig(plan)
	if err := r.speaker.Apply(ctx, bcfg); err != nil {
		errs = append(errs, fmt.Errorf("BGP: %w", err))
	}
	var learned []routing.LearnedPath
	best, err := r.speaker.Best()
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range best {
		learned = append(learned, routing.LearnedPath{Prefix: p.Prefix, NextHop: p.NextHop})
	}
	ks := plan.Kernel(learned)
	keep := !r.checkSynced(ctx, bcfg)
	rep, kerr := r.kernel.Apply(ks, kernel.ApplyOptions{KeepStale: keep})
	if kerr != nil {
		errs = append(errs, fmt.Errorf("kernel: %w", kerr))
	}
	for _, c := range rep.Changes {
		r.log.Info("kernel", "change", c)
	}
	err = errors.Join(errs...)
	r.recordPass(plan, ks, rep, problems, err)
	return err
}

// checkSynced reports whether stale routes may be removed: BGP has
// re-learned everything after the start, or SyncTimeout passed.
func (r *Router) checkSynced(ctx context.Context, bcfg *bgp.Config) bool {
	if r.synced {
		return true
	}
	switch {
	case bcfg == nil || len(bcfg.Peers) == 0:
		r.synced = true
	case time.Since(r.started) >= r.cfg.SyncTimeout:
		r.log.Info("BGP did not re-learn every route in time; removing stale routes", "after", r.cfg.SyncTimeout)
		r.synced = true
	default:
		peers, err := r.speaker.Peers(ctx)
		if err != nil || len(peers) < len(bcfg.Peers) {
			return false
		}
		for _, p := range peers {
			if !p.EndOfRIB {
				return false
			}
		}
		r.synced = true
	}
	if r.synced {
		r.log.Info("routes in sync with BGP", "after", time.Since(r.started).Round(time.Millisecond))
	}
	return r.synced
}

// bgpConfig turns the plan's BGP part into the speaker's configuration,
// reading password files. Peers whose password cannot be read are left
// out (a session without the password would fail anyway) and reported.
func (r *Router) bgpConfig(p *routing.Plan) (*bgp.Config, []string) {
	if p.BGP == nil {
		return nil, nil
	}
	g := p.BGP
	c := &bgp.Config{
		RouterID: g.RouterID, ASN: uint32(g.ASN), ListenAddr: g.ListenAddr, ListenPort: g.ListenPort,
		Paths: p.Adverts, NextHop4: p.NodeIP.Addr(),
	}
	if p.NodeIPv6.IsValid() {
		c.NextHop6 = p.NodeIPv6.Addr()
	}
	if g.ClusterID != "" {
		c.ClusterID, _ = netip.ParseAddr(g.ClusterID)
	}
	var problems []string
	for _, pr := range g.Peers {
		pw, err := readPassword(pr.Password)
		if err != nil {
			problems = append(problems, fmt.Sprintf("peer %s (%s): %v; not peering", pr.Address, pr.Type, err))
			continue
		}
		c.Peers = append(c.Peers, bgp.Peer{
			Address: pr.Address, Port: pr.Port, ASN: uint32(pr.ASN), LocalAddress: pr.LocalAddress,
			Password: pw, RouteReflectorClient: pr.RouteReflectorClient, KeepOriginalNextHop: pr.KeepOriginalNextHop,
			RestartTime: pr.MaxRestartTime, Keepalive: pr.KeepaliveTime, TTLSecurity: pr.TTLSecurity,
			AllowOwnAS: uint8(min(max(pr.AllowOwnAS, 0), 255)), Passive: pr.Passive, Description: string(pr.Type),
			Agent: pr.Node != "",
			BFD:   bgp.BFD{Enabled: pr.BFD.Enabled, MinRx: pr.BFD.MinRx, MinTx: pr.BFD.MinTx, Multiplier: pr.BFD.Multiplier},
		})
	}
	return c, problems
}

// readPassword resolves a BGP password. Errors never contain the password.
func readPassword(p *api.BGPPassword) (string, error) {
	switch {
	case p == nil:
		return "", nil
	case p.Value != "":
		return p.Value, nil
	case p.File != "":
		b, err := os.ReadFile(p.File)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case p.SecretKeyRef != nil:
		return "", fmt.Errorf("password.secretKeyRef %q names a Kubernetes secret, which Tabby does not read: use password.value or password.file", p.SecretKeyRef.Name)
	}
	return "", nil
}
