// Package bgp runs the host's embedded BGP speaker (GoBGP v4): it keeps the
// sessions and originated prefixes of a Config, reports the best paths
// learned from peers, and the state of every session. It programs no
// kernel routes; the router does.
//
// Graceful restart (RFC 4724) is on for every session. The speaker starts
// as a restarting speaker with its forwarding state preserved (the kernel
// keeps Tabby's routes across agent restarts), and when it stops it closes
// its sessions without a NOTIFICATION, so peers keep its routes until it
// is back or the restart time passes. Sessions removed from the Config are
// closed normally (peers withdraw at once).
//
// This package imports GoBGP and the standard library only; it must not
// import netlink, the datastore or internal/agent.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Defaults of Options.
const (
	DefaultRestartTime  = 120 * time.Second
	DefaultDeferralTime = 2 * time.Second
	DefaultConnectRetry = 3 * time.Second
)

// Options tune the speaker. The zero value gives the defaults.
type Options struct {
	Log *slog.Logger
	// RestartTime is the graceful-restart time announced to peers: how
	// long they keep this host's routes while it restarts.
	RestartTime time.Duration
	// DeferralTime bounds how long, after a restart, the speaker waits for
	// a peer's End-of-RIB before sending it its own routes.
	DeferralTime time.Duration
	// ConnectRetry is the interval between connection attempts.
	ConnectRetry time.Duration
	// GoBGPLogLevel is the level of GoBGP's own log (default warn).
	GoBGPLogLevel slog.Level
	// OnBFDTransition, if set, is called for every change of a session's
	// BFD state (Up, Down, Init, AdminDown) the speaker sees.
	OnBFDTransition func(peer netip.Addr, from, to string)
}

func (o Options) withDefaults() Options {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RestartTime == 0 {
		o.RestartTime = DefaultRestartTime
	}
	if o.DeferralTime == 0 {
		o.DeferralTime = DefaultDeferralTime
	}
	if o.ConnectRetry == 0 {
		o.ConnectRetry = DefaultConnectRetry
	}
	if o.GoBGPLogLevel == 0 {
		o.GoBGPLogLevel = slog.LevelWarn
	}
	return o
}

// Speaker is the host's BGP speaker. Build it with New; Run owns it.
type Speaker struct {
	o   Options
	log *slog.Logger

	changed chan struct{} // best paths or sessions changed (capacity 1)
	ready   chan struct{} // closed when Run starts

	mu         sync.Mutex
	srv        *server.BgpServer
	stopWatch  context.CancelFunc
	cur        *Config // what srv runs (nil: no server)
	keep       []string
	restarting bool // the next server starts as a restarting speaker
	done       bool
}

// New returns a speaker; it starts nothing.
func New(o Options) *Speaker {
	o = o.withDefaults()
	return &Speaker{
		o: o, log: o.Log.With("component", "bgp"),
		changed: make(chan struct{}, 1), ready: make(chan struct{}),
		restarting: true,
	}
}

// Changed is signalled (coalesced) when best paths or session states change.
func (s *Speaker) Changed() <-chan struct{} { return s.changed }

func (s *Speaker) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Run serves until ctx ends, then stops the speaker gracefully: sessions
// are closed without a NOTIFICATION so peers keep this host's routes for
// the restart time.
func (s *Speaker) Run(ctx context.Context) error {
	close(s.ready)
	<-ctx.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	s.stopServer(true)
	return nil
}

// Apply makes the speaker run cfg (nil: no speaker). Changed global
// settings restart the speaker (gracefully: peers keep the routes); changed
// sessions are re-made; paths are added and withdrawn one by one.
func (s *Speaker) Apply(ctx context.Context, cfg *Config) error {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if cfg != nil {
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return errors.New("bgp speaker is stopped")
	}
	if cfg == nil {
		if s.cur != nil {
			s.log.Info("stopping BGP speaker")
			s.stopServer(false)
		}
		return nil
	}
	if s.cur != nil && !sameGlobal(s.cur, cfg) {
		s.log.Info("BGP global settings changed; restarting the speaker", "routerID", cfg.RouterID, "as", cfg.ASN, "port", cfg.ListenPort)
		s.stopServer(true)
		s.restarting = true
	}
	if s.cur == nil {
		if err := s.startServer(cfg); err != nil {
			s.stopServer(false)
			return err
		}
	}
	var errs []error
	policyChanged, err := s.syncPolicy(ctx, cfg)
	if err != nil {
		errs = append(errs, err)
	}
	if err := s.syncPaths(cfg); err != nil {
		errs = append(errs, err)
	}
	if err := s.syncPeers(ctx, cfg); err != nil {
		errs = append(errs, err)
	}
	if policyChanged && len(s.cur.Peers) > 0 {
		// Re-send every route through the new export policy.
		if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: "all", Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT}); err != nil {
			errs = append(errs, fmt.Errorf("re-send routes after an export policy change: %w", err))
		}
	}
	s.restarting = false
	return errors.Join(errs...)
}

// startServer starts a GoBGP server with cfg's global settings and no
// peers or paths. Called with s.mu held.
func (s *Speaker) startServer(cfg *Config) error {
	lvl := &slog.LevelVar{}
	lvl.Set(s.o.GoBGPLogLevel)
	srv := server.NewBgpServer(server.LoggerOption(s.o.Log.With("component", "gobgp"), lvl))
	go srv.Serve()
	s.srv = srv
	g := &api.Global{Asn: cfg.ASN, RouterId: cfg.RouterID.String(), ListenPort: int32(cfg.ListenPort)}
	if cfg.ListenPort == 0 {
		g.ListenPort = -1
	} else if cfg.ListenAddr.IsValid() && !cfg.ListenAddr.IsUnspecified() {
		g.ListenAddresses = []string{cfg.ListenAddr.String()}
	}
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		return fmt.Errorf("start BGP (router-id %s, as %d, port %d): %w", cfg.RouterID, cfg.ASN, cfg.ListenPort, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	peerEvent := make(chan struct{}, 1)
	err := srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{
		OnBestPath: func([]*apiutil.Path, time.Time) { s.signal() },
		OnPathEor:  func(*apiutil.Path, time.Time) { s.signal() },
		OnPeerUpdate: func(*apiutil.WatchEventMessage_PeerEvent, time.Time) {
			s.signal()
			select {
			case peerEvent <- struct{}{}:
			default:
			}
		},
	}, server.WatchBestPath(false), server.WatchPeer(), server.WatchEor(false))
	if err != nil {
		cancel()
		return fmt.Errorf("watch BGP events: %w", err)
	}
	go s.watchLost(wctx, srv, peerEvent)
	s.stopWatch = cancel
	s.cur = &Config{RouterID: cfg.RouterID, ASN: cfg.ASN, ListenAddr: cfg.ListenAddr, ListenPort: cfg.ListenPort, ClusterID: cfg.ClusterID}
	s.keep = nil
	s.log.Info("BGP speaker started", "routerID", cfg.RouterID, "as", cfg.ASN, "port", cfg.ListenPort)
	return nil
}

// stopServer stops the running server. graceful keeps peers' copies of
// our routes (no NOTIFICATION to graceful-restart peers). Called with
// s.mu held.
func (s *Speaker) stopServer(graceful bool) {
	if s.srv == nil {
		return
	}
	if s.stopWatch != nil {
		s.stopWatch()
		s.stopWatch = nil
	}
	if err := s.srv.StopBgp(context.Background(), &api.StopBgpRequest{AllowGracefulRestart: graceful}); err != nil {
		s.log.Warn("stop BGP", "error", err)
	}
	s.srv, s.cur, s.keep = nil, nil, nil
	s.signal()
}

// syncPolicy keeps the export policy that leaves the next hop of routes
// sent to keepOriginalNextHop peers unchanged.
func (s *Speaker) syncPolicy(ctx context.Context, cfg *Config) (bool, error) {
	keep := keepNextHop(cfg)
	if s.keep != nil && slices.Equal(keep, s.keep) || s.keep == nil && len(keep) == 0 {
		return false, nil
	}
	const setName, policyName = "tabby-keep-next-hop", "tabby-keep-next-hop"
	req := &api.SetPoliciesRequest{}
	if len(keep) > 0 {
		req.DefinedSets = []*api.DefinedSet{{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: setName, List: keep}}
		req.Policies = []*api.Policy{{Name: policyName, Statements: []*api.Statement{{
			Name:       policyName,
			Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: setName}},
			Actions:    &api.Actions{Nexthop: &api.NexthopAction{Unchanged: true}},
		}}}}
	}
	if len(s.keep) > 0 {
		// Unassign before the policy it names is replaced.
		if err := s.srv.DeletePolicyAssignment(ctx, &api.DeletePolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT}, All: true}); err != nil {
			return false, fmt.Errorf("remove the keep-next-hop export policy: %w", err)
		}
	}
	if err := s.srv.SetPolicies(ctx, req); err != nil {
		return false, fmt.Errorf("set the keep-next-hop export policy: %w", err)
	}
	if len(keep) > 0 {
		if err := s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT,
			Policies: []*api.Policy{{Name: policyName}}, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
		}}); err != nil {
			return false, fmt.Errorf("assign the keep-next-hop export policy: %w", err)
		}
	}
	s.keep = keep
	if s.keep == nil {
		s.keep = []string{}
	}
	return true, nil
}

// syncPaths adds and withdraws originated prefixes.
func (s *Speaker) syncPaths(cfg *Config) error {
	want := map[netip.Prefix]netip.Addr{}
	for _, p := range cfg.Paths {
		p = p.Masked()
		nh := cfg.NextHop4
		if p.Addr().Is6() {
			nh = cfg.NextHop6
		}
		if nh.IsValid() && nh.Is4() == p.Addr().Is4() {
			want[p] = nh
		}
	}
	have := map[netip.Prefix]netip.Addr{}
	for _, p := range s.cur.Paths {
		nh := s.cur.NextHop4
		if p.Addr().Is6() {
			nh = s.cur.NextHop6
		}
		have[p] = nh
	}
	var add, del []*apiutil.Path
	var errs []error
	for p, nh := range want {
		if have[p] == nh {
			continue
		}
		ap, err := pathFor(p, nh)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		add = append(add, ap)
	}
	for p, nh := range have {
		if _, ok := want[p]; ok {
			continue
		}
		ap, err := pathFor(p, nh)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		del = append(del, ap)
	}
	if len(del) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: del}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %d prefixes: %w", len(del), err))
		}
	}
	if len(add) > 0 {
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: add}); err != nil {
			errs = append(errs, fmt.Errorf("advertise %d prefixes: %w", len(add), err))
		}
	}
	if len(errs) > 0 {
		// Unknown state: withdraw and add everything on the next Apply.
		s.cur.Paths = nil
		return errors.Join(errs...)
	}
	s.cur.Paths = slices.Collect(func(yield func(netip.Prefix) bool) {
		for p := range want {
			if !yield(p) {
				return
			}
		}
	})
	s.cur.NextHop4, s.cur.NextHop6 = cfg.NextHop4, cfg.NextHop6
	return nil
}

func pathFor(p netip.Prefix, nh netip.Addr) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(p)
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", p, err)
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	fam := bgp.RF_IPv4_UC
	if p.Addr().Is4() {
		a, err := bgp.NewPathAttributeNextHop(nh)
		if err != nil {
			return nil, fmt.Errorf("next hop %s: %w", nh, err)
		}
		attrs = append(attrs, a)
	} else {
		fam = bgp.RF_IPv6_UC
		a, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, nh)
		if err != nil {
			return nil, fmt.Errorf("next hop %s: %w", nh, err)
		}
		attrs = append(attrs, a)
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}, nil
}

// syncPeers adds, re-makes and removes sessions.
func (s *Speaker) syncPeers(ctx context.Context, cfg *Config) error {
	have := map[netip.Addr]Peer{}
	for _, p := range s.cur.Peers {
		have[p.Address] = p
	}
	want := map[netip.Addr]bool{}
	var errs []error
	var peers []Peer
	for _, p := range cfg.Peers {
		want[p.Address] = true
		old, ok := have[p.Address]
		if ok && sameSession(old, p) {
			peers = append(peers, p)
			continue
		}
		if ok {
			s.log.Info("BGP session settings changed; re-making it", "peer", p)
			if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
				errs = append(errs, fmt.Errorf("remove peer %s: %w", p, err))
				peers = append(peers, old)
				continue
			}
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, cfg, &s.o, s.restarting, p.BFD)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s: %w", p, err))
			continue
		}
		s.log.Info("BGP peer added", "peer", p)
		peers = append(peers, p)
	}
	for addr, p := range have {
		if want[addr] {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("remove peer %s: %w", p, err))
			peers = append(peers, p)
			continue
		}
		s.log.Info("BGP peer removed", "peer", p)
	}
	s.cur.Peers = peers
	return errors.Join(errs...)
}
