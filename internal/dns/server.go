// Package dns is Tabby's service discovery: an authoritative DNS server for
// the Mesos-DNS names (<task>.<framework>.mesos, SRV, leader/master/slave)
// and the DC/OS names (*.dcos.thisdcos.directory), built from the Tabby
// datastore (WorkloadEndpoints and Nodes, watched) and, optionally, the
// Mesos master's state (polled); everything else is forwarded to upstream
// servers. It also serves Mesos-DNS's HTTP API and Prometheus metrics.
//
// Records are computed by the pure package records; this package turns
// them into an immutable snapshot that queries read without locks and that
// a builder goroutine replaces atomically whenever a source changes.
//
// It must not import netlink, nftables or GoBGP; it reaches the datastore
// only through the datastore.Store interface.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/dns/records"
)

// Options are a Server's collaborators.
type Options struct {
	// Store is the Tabby datastore; nil serves no datastore records.
	Store datastore.Store
	// Logger receives state changes (never one line per query).
	Logger *slog.Logger
	// Version is reported by /v1/version.
	Version string
	// HTTPClient fetches the Mesos master state; nil means a private
	// client with Config.StateTimeoutSeconds.
	HTTPClient *http.Client
}

// Server is the `tabby dns` daemon. New validates and prepares it, Listen
// binds its sockets and Run serves until its context ends.
type Server struct {
	cfg     Config
	rc      records.Config
	log     *slog.Logger
	version string
	m       *metrics
	snap    atomic.Pointer[snapshot]
	h       *handler
	trigger chan struct{}
	ds      *datastoreSource
	ms      *mesosSource

	udpConn net.PacketConn
	tcpLn   net.Listener
	httpLn  net.Listener

	// owned by the builder goroutine
	serial       uint32
	wasReady     bool
	lastWarnings []string
}

// New checks cfg and prepares a server; it starts nothing.
func New(cfg Config, opts Options) (*Server, error) {
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dns config: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, version: opts.Version, m: newMetrics(), trigger: make(chan struct{}, 1)}
	s.rc = cfg.recordsConfig(nil)
	s.h = &handler{snap: &s.snap, m: s.m, log: log, recurse: cfg.RecurseOn, truncBit: cfg.SetTruncateBit}
	if cfg.ExternalOn {
		if f := newForwarder(cfg.upstreams(), cfg.ZoneResolvers, time.Duration(cfg.Timeout)*time.Second, cfg.MaxForwardsInFlight); f.hasUpstreams() {
			s.h.fwd = f
		}
	}
	s.h.clients.Store(newClientFilter(cfg.ForwardAllowAny, cfg.staticNets(), nil, nil))
	if opts.Store != nil {
		s.ds = newDatastoreSource(opts.Store, log, s.m, s.changed)
	}
	if len(cfg.Masters) > 0 {
		client := opts.HTTPClient
		if client == nil {
			client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, ResponseHeaderTimeout: time.Duration(cfg.StateTimeoutSeconds) * time.Second}}
		}
		s.ms = &mesosSource{client: client, refresh: cfg.refresh(), timeout: time.Duration(cfg.StateTimeoutSeconds) * time.Second,
			log: log.With("source", "mesos"), m: s.m, changed: s.changed}
		for _, m := range cfg.Masters {
			base, _, _ := masterURL(m)
			s.ms.masters = append(s.ms.masters, base)
		}
	}
	s.publish(records.Build(s.rc, records.Input{}), s.ds == nil && s.ms == nil)
	return s, nil
}

// Listen binds the DNS (UDP and TCP, same port) and HTTP sockets that the
// configuration turns on. With port 0 the system picks free ports; see
// DNSAddr and HTTPAddr.
func (s *Server) Listen() (err error) {
	if s.udpConn != nil || s.httpLn != nil {
		return errors.New("dns: Listen called twice")
	}
	defer func() {
		if err != nil {
			s.closeSockets()
		}
	}()
	if s.cfg.DNSOn {
		// With port 0, the port the system picks for UDP may be taken for
		// TCP: pick again a few times.
		tries := 1
		if s.cfg.Port == 0 {
			tries = 20
		}
		addr := net.JoinHostPort(s.cfg.Listener, strconv.Itoa(s.cfg.Port))
		for i := 0; ; i++ {
			if s.udpConn, err = net.ListenPacket("udp", addr); err != nil {
				return fmt.Errorf("listen for DNS on udp %s: %w", addr, err)
			}
			bound := s.udpConn.LocalAddr().String() // the same port for TCP
			if s.tcpLn, err = net.Listen("tcp", bound); err == nil {
				break
			}
			_ = s.udpConn.Close()
			s.udpConn = nil
			if i+1 == tries {
				return fmt.Errorf("listen for DNS on tcp %s: %w", bound, err)
			}
		}
	}
	if s.cfg.HTTPOn {
		addr := net.JoinHostPort(s.cfg.HTTPListener, strconv.Itoa(s.cfg.HTTPPort))
		if s.httpLn, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("listen for HTTP on %s: %w", addr, err)
		}
	}
	s.rc.NSAddrs = listenerAddrs(s.cfg.Listener)
	return nil
}

func (s *Server) closeSockets() {
	for _, c := range []interface{ Close() error }{s.udpConn, s.tcpLn, s.httpLn} {
		if c != nil {
			_ = c.Close()
		}
	}
	s.udpConn, s.tcpLn, s.httpLn = nil, nil, nil
}

// listenerAddrs are the addresses ns1.<domain> resolves to: the listener,
// or every non-loopback address of the host when it listens on all.
func listenerAddrs(listener string) []netip.Addr {
	ip, err := netip.ParseAddr(listener)
	if err != nil {
		return nil
	}
	if !ip.IsUnspecified() {
		return []netip.Addr{ip.Unmap()}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if ip := p.Addr().Unmap(); !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
			out = append(out, ip)
		}
	}
	return out
}

// DNSAddr is the bound DNS address (nil before Listen or with DNS off).
func (s *Server) DNSAddr() net.Addr {
	if s.udpConn == nil {
		return nil
	}
	return s.udpConn.LocalAddr()
}

// HTTPAddr is the bound HTTP address (nil before Listen or with HTTP off).
func (s *Server) HTTPAddr() net.Addr {
	if s.httpLn == nil {
		return nil
	}
	return s.httpLn.Addr()
}

// Run serves until ctx ends (nil) or a listener fails (its error). It
// calls Listen if that was not done.
func (s *Server) Run(ctx context.Context) error {
	if s.udpConn == nil && s.httpLn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	goRun := func(f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
		}()
	}
	goRun(s.build)
	s.changed()
	if s.ds != nil {
		goRun(s.ds.run)
	}
	if s.ms != nil {
		goRun(s.ms.run)
	}

	errc := make(chan error, 3)
	var dnsServers []*mdns.Server
	if s.udpConn != nil {
		for _, srv := range []*mdns.Server{
			{PacketConn: s.udpConn, UDPSize: 4096},
			{Listener: s.tcpLn, ReadTimeout: 5 * time.Second},
		} {
			srv.Handler = s.h
			srv.MsgAcceptFunc = acceptQuery
			srv.MsgInvalidFunc = func([]byte, error) { s.m.malformed.Inc() }
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			go func() { errc <- srv.ActivateAndServe() }()
			select {
			case <-started:
				dnsServers = append(dnsServers, srv)
			case err := <-errc:
				s.stop(cancel, &wg, dnsServers, nil)
				return fmt.Errorf("serve DNS: %w", err)
			}
		}
	}
	var httpSrv *http.Server
	if s.httpLn != nil {
		httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		ln := s.httpLn // closeSockets clears the field, maybe before this goroutine runs
		go func() {
			if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve HTTP: %w", err)
			}
		}()
	}
	s.log.Info("serving", "dns", s.DNSAddr(), "http", s.HTTPAddr(), "domain", s.cfg.Domain, "dcos_domain", s.cfg.DCOSDomain,
		"ip_sources", s.cfg.IPSources, "datastore", s.ds != nil, "mesos_masters", s.cfg.Masters, "upstreams", s.cfg.upstreams(),
		"forward_allow_any", s.cfg.ForwardAllowAny, "forward_allow", s.cfg.ForwardAllow, "max_forwards_in_flight", s.cfg.MaxForwardsInFlight)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		s.log.Error("a listener failed; stopping", "error", err)
	}
	s.stop(cancel, &wg, dnsServers, httpSrv)
	s.log.Info("stopped")
	return err
}

func (s *Server) stop(cancel context.CancelFunc, wg *sync.WaitGroup, dnsServers []*mdns.Server, httpSrv *http.Server) {
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	for _, srv := range dnsServers {
		_ = srv.ShutdownContext(sctx)
	}
	if httpSrv != nil {
		_ = httpSrv.Shutdown(sctx)
	}
	cancel()
	wg.Wait()
	s.closeSockets()
}

// acceptQuery is miekg/dns's default filter, except that NOTIFY (which we
// do not implement) is answered NOTIMP rather than passed on.
func acceptQuery(dh mdns.Header) mdns.MsgAcceptAction {
	if dh.Bits&(1<<15) == 0 && int(dh.Bits>>11)&0xF == mdns.OpcodeNotify {
		return mdns.MsgRejectNotImplemented
	}
	return mdns.DefaultMsgAcceptFunc(dh)
}

// changed tells the builder that a source changed; changes that arrive
// while it builds are folded into its next build.
func (s *Server) changed() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

func (s *Server) build(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.trigger:
		}
		s.rebuild()
	}
}

// rebuild computes a new snapshot from the sources' current inputs and
// publishes it.
func (s *Server) rebuild() {
	start := time.Now()
	var in records.Input
	ready := true
	if s.ds != nil {
		var synced bool
		var pools []*api.IPPool
		in.Endpoints, in.Nodes, pools, synced = s.ds.inputs()
		ready = ready && synced
		s.h.clients.Store(newClientFilter(s.cfg.ForwardAllowAny, s.cfg.staticNets(), pools, in.Nodes))
	}
	if s.ms != nil {
		var attempted bool
		in.Mesos, attempted = s.ms.current()
		ready = ready && attempted
	}
	set := records.Build(s.rc, in)
	s.publish(set, ready)
	s.m.buildSeconds.Observe(time.Since(start).Seconds())
	if ready && !s.wasReady {
		s.log.Info("ready: answering for our zones", "names", len(set.Names), "endpoints", len(in.Endpoints), "nodes", len(in.Nodes), "mesos_state", in.Mesos != nil)
	}
	s.wasReady = ready
	if !slices.Equal(set.Warnings, s.lastWarnings) {
		for _, w := range set.Warnings {
			s.log.Warn("skipped while building records", "warning", w)
		}
		s.lastWarnings = set.Warnings
	}
}

// publish swaps in a snapshot of set with the next SOA serial.
func (s *Server) publish(set *records.Set, ready bool) {
	serial := uint32(time.Now().Unix())
	if serial <= s.serial {
		serial = s.serial + 1
	}
	s.serial = serial
	s.snap.Store(newSnapshot(set, serial, ready))
	s.m.builds.Inc()
	s.m.names.Set(float64(len(set.Names)))
	s.m.serial.Set(float64(serial))
	s.m.warnings.Set(float64(len(set.Warnings)))
	if ready {
		s.m.ready.Set(1)
	} else {
		s.m.ready.Set(0)
	}
}
