// Package embedded runs an etcd v3 server inside the Tabby process: the
// single-member datastore of `tabby datastore run`, of the lab and of
// tests, or one member of a small static cluster. Its data lives in
// Config.DataDir and survives restarts; auto-compaction and a backend
// quota are on by default.
//
// It imports etcd's server (go.etcd.io/etcd/server/v3/embed) and nothing
// of Tabby's; it must not import the etcd client, netlink, nftables or
// GoBGP. Clients reach it through internal/datastore/etcd.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
)

// Defaults applied by Config.Defaults.
const (
	DefaultName                    = "tabby"
	DefaultListenClient            = "http://127.0.0.1:2379"
	DefaultClusterToken            = "tabby"
	DefaultAutoCompactionMode      = "periodic"
	DefaultAutoCompactionRetention = "1h"
	// DefaultQuotaBackendBytes is the backend size at which etcd raises a
	// NOSPACE alarm and refuses writes until compacted and defragmented.
	DefaultQuotaBackendBytes = 2 << 30
	// singlePeerURL is where a single member listens for peers when no
	// peer URL is configured: a random loopback port no one dials.
	singlePeerURL = "http://127.0.0.1:0"
)

// Cluster states.
const (
	ClusterStateNew      = "new"
	ClusterStateExisting = "existing"
)

// Config describes one embedded etcd member. The zero value plus a
// DataDir is a single-member cluster on http://127.0.0.1:2379.
type Config struct {
	// Name of this member (default "tabby"); unique within the cluster.
	Name string
	// DataDir holds the WAL, snapshots and database. Required.
	DataDir string
	// ListenClient is where clients connect: http://IP:PORT,
	// https://IP:PORT or unix:///path/sock (PORT 0 picks a free port;
	// ClientURL reports it once started), or several such URLs separated
	// by commas (then without port 0). Default http://127.0.0.1:2379.
	ListenClient string
	// AdvertiseClient is the client URL published to the cluster
	// (default ListenClient, with a wildcard host replaced by 127.0.0.1).
	AdvertiseClient string
	// ListenPeer is where other members connect (http://IP:PORT or
	// https://IP:PORT). Default: a random loopback port, enough for a
	// single member; set it for a multi-member cluster.
	ListenPeer string
	// AdvertisePeer is the peer URL published to the cluster (default
	// ListenPeer; required when ListenPeer has a wildcard host).
	AdvertisePeer string
	// InitialCluster is "name=peerURL,name=peerURL,..." (default: this
	// member alone). Used only when DataDir holds no data yet.
	InitialCluster string
	// ClusterState is "new" (default) or "existing" (joining a running
	// cluster that already lists this member).
	ClusterState string
	// InitialClusterToken tells separate clusters apart (default "tabby").
	InitialClusterToken string

	// Client TLS: certificate and key served on https:// and unixs://
	// client URLs; TrustedCAFile with ClientCertAuth requires clients to
	// present a certificate signed by that CA.
	CertFile, KeyFile, TrustedCAFile string
	ClientCertAuth                   bool
	// Peer TLS (multi-member only); a PeerTrustedCAFile also makes peers
	// authenticate with their certificates.
	PeerCertFile, PeerKeyFile, PeerTrustedCAFile string

	// AutoCompactionMode is "periodic" (default) or "revision";
	// AutoCompactionRetention is a duration for periodic ("1h", default)
	// or a number of revisions for revision mode.
	AutoCompactionMode      string
	AutoCompactionRetention string
	// QuotaBackendBytes is the backend size limit (default 2 GiB).
	QuotaBackendBytes int64
	// UnsafeNoFsync skips fsync: data may be lost on a crash. Tests only.
	UnsafeNoFsync bool

	// Logger receives etcd's warnings and errors and the server's state
	// changes. Default: slog.Default().
	Logger *slog.Logger
	// EtcdLogLevel is the least severe etcd log entry passed to Logger
	// (default slog.LevelError: etcd is chatty at Info and Warn).
	EtcdLogLevel *slog.Level
}

// Defaults returns c with every unset field given its default.
func (c Config) Defaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.ListenClient == "" {
		c.ListenClient = DefaultListenClient
	}
	if c.AdvertiseClient == "" {
		var adv []string
		for _, u := range splitURLs(c.ListenClient) {
			adv = append(adv, unwildcard(u))
		}
		c.AdvertiseClient = strings.Join(adv, ",")
	}
	if c.ListenPeer == "" && c.InitialCluster == "" {
		c.ListenPeer = singlePeerURL
	}
	if c.AdvertisePeer == "" && !isWildcard(c.ListenPeer) {
		c.AdvertisePeer = c.ListenPeer
	}
	if c.InitialCluster == "" && c.AdvertisePeer != "" {
		c.InitialCluster = c.Name + "=" + c.AdvertisePeer
	}
	if c.ClusterState == "" {
		c.ClusterState = ClusterStateNew
	}
	if c.InitialClusterToken == "" {
		c.InitialClusterToken = DefaultClusterToken
	}
	if c.AutoCompactionMode == "" {
		c.AutoCompactionMode = DefaultAutoCompactionMode
	}
	if c.AutoCompactionRetention == "" {
		c.AutoCompactionRetention = DefaultAutoCompactionRetention
		if c.AutoCompactionMode == "revision" {
			c.AutoCompactionRetention = "10000"
		}
	}
	if c.QuotaBackendBytes == 0 {
		c.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate checks a defaulted Config; errors name the field and the value.
func (c Config) Validate() error {
	if c.Name == "" || strings.ContainsAny(c.Name, "=,") {
		return fmt.Errorf("name %q: must be non-empty without '=' or ','", c.Name)
	}
	if c.DataDir == "" {
		return errors.New("dataDir: required")
	}
	tlsClient := c.CertFile != "" || c.KeyFile != ""
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("certFile %q, keyFile %q: set both or neither", c.CertFile, c.KeyFile)
	}
	if c.ClientCertAuth && c.TrustedCAFile == "" {
		return errors.New("clientCertAuth: needs trustedCAFile")
	}
	if (c.PeerCertFile == "") != (c.PeerKeyFile == "") {
		return fmt.Errorf("peerCertFile %q, peerKeyFile %q: set both or neither", c.PeerCertFile, c.PeerKeyFile)
	}
	for _, f := range []struct{ name, val string }{{"listenClient", c.ListenClient}, {"advertiseClient", c.AdvertiseClient}} {
		urls := splitURLs(f.val)
		if len(urls) == 0 {
			urls = []string{f.val}
		}
		for _, v := range urls {
			u, err := parseURL(f.name, v, "http", "https", "unix", "unixs")
			if err != nil {
				return err
			}
			if (u.Scheme == "https" || u.Scheme == "unixs") && !tlsClient {
				return fmt.Errorf("%s %q: TLS scheme needs certFile and keyFile", f.name, v)
			}
			if len(urls) > 1 && u.Port() == "0" {
				return fmt.Errorf("%s %q: port 0 needs a single URL", f.name, f.val)
			}
		}
	}
	if c.ListenPeer == "" {
		return errors.New("listenPeer: required with initialCluster")
	}
	if c.AdvertisePeer == "" {
		return fmt.Errorf("advertisePeer: required when listenPeer %q is a wildcard address", c.ListenPeer)
	}
	for _, f := range []struct{ name, val string }{{"listenPeer", c.ListenPeer}, {"advertisePeer", c.AdvertisePeer}} {
		u, err := parseURL(f.name, f.val, "http", "https")
		if err != nil {
			return err
		}
		if u.Scheme == "https" && c.PeerCertFile == "" {
			return fmt.Errorf("%s %q: TLS scheme needs peerCertFile and peerKeyFile", f.name, f.val)
		}
	}
	if isWildcard(c.AdvertisePeer) {
		return fmt.Errorf("advertisePeer %q: must be an address other members can reach", c.AdvertisePeer)
	}
	if c.InitialCluster == "" {
		return errors.New("initialCluster: required")
	}
	members, err := parseInitialCluster(c.InitialCluster)
	if err != nil {
		return err
	}
	if !members[c.Name] {
		return fmt.Errorf("initialCluster %q: does not list this member %q", c.InitialCluster, c.Name)
	}
	if c.ClusterState != ClusterStateNew && c.ClusterState != ClusterStateExisting {
		return fmt.Errorf("clusterState %q: must be %q or %q", c.ClusterState, ClusterStateNew, ClusterStateExisting)
	}
	switch c.AutoCompactionMode {
	case "periodic":
		if d, err := time.ParseDuration(c.AutoCompactionRetention); err != nil || d < 0 {
			return fmt.Errorf("autoCompactionRetention %q: periodic mode needs a duration such as 1h", c.AutoCompactionRetention)
		}
	case "revision":
		if n, err := strconv.ParseInt(c.AutoCompactionRetention, 10, 64); err != nil || n < 0 {
			return fmt.Errorf("autoCompactionRetention %q: revision mode needs a number of revisions", c.AutoCompactionRetention)
		}
	default:
		return fmt.Errorf("autoCompactionMode %q: must be periodic or revision", c.AutoCompactionMode)
	}
	if c.QuotaBackendBytes < 0 {
		return fmt.Errorf("quotaBackendBytes %d: must not be negative", c.QuotaBackendBytes)
	}
	return nil
}

func parseURL(field, s string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %v", field, s, err)
	}
	ok := false
	for _, sc := range schemes {
		ok = ok || u.Scheme == sc
	}
	if !ok {
		return nil, fmt.Errorf("%s %q: scheme must be one of %s", field, s, strings.Join(schemes, ", "))
	}
	if u.Scheme == "unix" || u.Scheme == "unixs" {
		if u.Host != "" || u.Path == "" {
			return nil, fmt.Errorf("%s %q: want %s:///absolute/path", field, s, u.Scheme)
		}
		return u, nil
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("%s %q: want %s://IP:PORT", field, s, u.Scheme)
	}
	if host != "localhost" && net.ParseIP(host) == nil {
		return nil, fmt.Errorf("%s %q: host must be an IP address", field, s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("%s %q: bad port %q", field, s, port)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%s %q: unexpected path %q", field, s, u.Path)
	}
	return u, nil
}

func parseInitialCluster(s string) (map[string]bool, error) {
	members := map[string]bool{}
	for _, m := range strings.Split(s, ",") {
		name, u, ok := strings.Cut(m, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("initialCluster %q: entry %q is not name=peerURL", s, m)
		}
		if _, err := parseURL("initialCluster", u, "http", "https"); err != nil {
			return nil, err
		}
		members[name] = true
	}
	return members, nil
}

// splitURLs splits a comma-separated URL list, dropping empty entries.
func splitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func isWildcard(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsUnspecified()
}

// unwildcard replaces a wildcard host with the loopback address of its family.
func unwildcard(s string) string {
	u, err := url.Parse(s)
	if err != nil || !isWildcard(s) {
		return s
	}
	lo := "127.0.0.1"
	if ip := net.ParseIP(u.Hostname()); ip.To4() == nil {
		lo = "::1"
	}
	u.Host = net.JoinHostPort(lo, u.Port())
	return u.String()
}

// Server is one embedded etcd member. Start it, then Stop it (or use Run).
type Server struct {
	cfg     Config
	log     *slog.Logger
	etcdLog *slog.Logger
	level   zap.AtomicLevel

	mu        sync.Mutex
	etcd      *embed.Etcd
	grpcs     []*grpc.Server
	clientURL string
	// bound is the client listen URL with the port picked at the first
	// Start (when the config asked for port 0): a restarted Server
	// listens where it listened before, so its clients reconnect.
	bound string
}

// New checks cfg (after applying defaults) and returns a Server that is
// not yet running.
func New(cfg Config) (*Server, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("embedded etcd config: %w", err)
	}
	lvl := slog.LevelError
	if cfg.EtcdLogLevel != nil {
		lvl = *cfg.EtcdLogLevel
	}
	return &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "datastore", "member", cfg.Name),
		etcdLog:   cfg.Logger.With("component", "etcd", "member", cfg.Name),
		level:     zap.NewAtomicLevelAt(zapLevel(lvl)),
		clientURL: cfg.AdvertiseClient,
	}, nil
}

func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l < slog.LevelInfo:
		return zapcore.DebugLevel
	case l < slog.LevelWarn:
		return zapcore.InfoLevel
	case l < slog.LevelError:
		return zapcore.WarnLevel
	default:
		return zapcore.ErrorLevel
	}
}

// Config returns the defaulted configuration.
func (s *Server) Config() Config { return s.cfg }

func (s *Server) embedConfig() (*embed.Config, error) {
	c := s.cfg
	ec := embed.NewConfig()
	ec.Name = c.Name
	ec.Dir = c.DataDir
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(s.etcdLog, s.level))
	parse := func(v string) ([]url.URL, error) {
		var out []url.URL
		for _, s := range splitURLs(v) {
			u, err := url.Parse(s)
			if err != nil {
				return nil, err
			}
			out = append(out, *u)
		}
		return out, nil
	}
	listen, advertise := c.ListenClient, c.AdvertiseClient
	s.mu.Lock()
	if s.bound != "" {
		listen = s.bound
		if advertise == c.ListenClient || advertise == unwildcard(c.ListenClient) {
			advertise = unwildcard(s.bound)
		}
	}
	s.mu.Unlock()
	var err error
	if ec.ListenClientUrls, err = parse(listen); err != nil {
		return nil, err
	}
	if ec.AdvertiseClientUrls, err = parse(advertise); err != nil {
		return nil, err
	}
	if ec.ListenPeerUrls, err = parse(c.ListenPeer); err != nil {
		return nil, err
	}
	if ec.AdvertisePeerUrls, err = parse(c.AdvertisePeer); err != nil {
		return nil, err
	}
	ec.InitialCluster = c.InitialCluster
	ec.ClusterState = c.ClusterState
	ec.InitialClusterToken = c.InitialClusterToken
	ec.ClientTLSInfo.CertFile = c.CertFile
	ec.ClientTLSInfo.KeyFile = c.KeyFile
	ec.ClientTLSInfo.TrustedCAFile = c.TrustedCAFile
	ec.ClientTLSInfo.ClientCertAuth = c.ClientCertAuth
	ec.PeerTLSInfo.CertFile = c.PeerCertFile
	ec.PeerTLSInfo.KeyFile = c.PeerKeyFile
	ec.PeerTLSInfo.TrustedCAFile = c.PeerTrustedCAFile
	ec.PeerTLSInfo.ClientCertAuth = c.PeerTrustedCAFile != ""
	ec.AutoCompactionMode = c.AutoCompactionMode
	ec.AutoCompactionRetention = c.AutoCompactionRetention
	ec.QuotaBackendBytes = c.QuotaBackendBytes
	ec.UnsafeNoFsync = c.UnsafeNoFsync
	// Only the gRPC API: no v2/HTTP gateway, no metrics endpoint of its own.
	ec.EnableGRPCGateway = false
	ec.Metrics = "basic"
	ec.ServiceRegister = func(g *grpc.Server) {
		s.mu.Lock()
		s.grpcs = append(s.grpcs, g)
		s.mu.Unlock()
	}
	return ec, nil
}

// Start launches the member and returns once it serves clients (for a
// multi-member cluster: once the cluster has a leader), or when ctx ends.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.etcd != nil {
		s.mu.Unlock()
		return fmt.Errorf("start embedded etcd %q: already running", s.cfg.Name)
	}
	s.mu.Unlock()
	ec, err := s.embedConfig()
	if err != nil {
		return fmt.Errorf("start embedded etcd %q: %w", s.cfg.Name, err)
	}
	s.level.SetLevel(s.configuredLevel())
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return fmt.Errorf("start embedded etcd %q in %s: %w", s.cfg.Name, s.cfg.DataDir, err)
	}
	s.mu.Lock()
	s.etcd = e
	s.clientURL = s.actualClientURL(e)
	if s.bound == "" {
		s.bound = s.boundURL(e)
	}
	s.mu.Unlock()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		_ = s.Stop()
		return fmt.Errorf("start embedded etcd %q: %w", s.cfg.Name, err)
	case <-e.Server.StopNotify():
		_ = s.Stop()
		return fmt.Errorf("start embedded etcd %q: server stopped while starting", s.cfg.Name)
	case <-ctx.Done():
		_ = s.Stop()
		return fmt.Errorf("start embedded etcd %q: waiting for the cluster to be ready: %w", s.cfg.Name, ctx.Err())
	}
	s.log.Info("datastore ready", "client_url", s.ClientURL(), "data_dir", s.cfg.DataDir)
	return nil
}

func (s *Server) configuredLevel() zapcore.Level {
	lvl := slog.LevelError
	if s.cfg.EtcdLogLevel != nil {
		lvl = *s.cfg.EtcdLogLevel
	}
	return zapLevel(lvl)
}

// actualClientURL is the URL clients use to reach the started server: the
// listen URL with the port the kernel picked and a wildcard host replaced
// by loopback.
func (s *Server) actualClientURL(e *embed.Etcd) string {
	listen := s.cfg.ListenClient
	if s.bound != "" {
		listen = s.bound
	}
	u, err := url.Parse(listen)
	if err != nil || u.Scheme == "unix" || u.Scheme == "unixs" || len(e.Clients) == 0 || strings.Contains(listen, ",") {
		return listen
	}
	if _, port, err := net.SplitHostPort(e.Clients[0].Addr().String()); err == nil {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return unwildcard(u.String())
}

// boundURL is the listen URL with the port the kernel picked.
func (s *Server) boundURL(e *embed.Etcd) string {
	u, err := url.Parse(s.cfg.ListenClient)
	if err != nil || u.Port() != "0" || len(e.Clients) == 0 || strings.Contains(s.cfg.ListenClient, ",") {
		return s.cfg.ListenClient
	}
	if _, port, err := net.SplitHostPort(e.Clients[0].Addr().String()); err == nil {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u.String()
}

// ClientURL is the URL clients reach this member at (after Start: with
// the actual port when the config asked for port 0).
func (s *Server) ClientURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clientURL
}

// IsLeader reports whether this member currently leads the cluster.
func (s *Server) IsLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etcd != nil && s.etcd.Server.Leader() == s.etcd.Server.MemberID()
}

// Err reports a fatal error of the running server (nil channel when
// stopped).
func (s *Server) Err() <-chan error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.etcd == nil {
		return nil
	}
	return s.etcd.Err()
}

// stopGrace is how long Stop lets open client streams (watches) finish
// before cutting them; clients reconnect and resume on their own.
const stopGrace = 500 * time.Millisecond

// Stop shuts the member down and waits for it; calling it again (or on a
// server that never started) does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	e := s.etcd
	s.etcd = nil
	grpcs := s.grpcs
	s.grpcs = nil
	s.mu.Unlock()
	if e == nil {
		return nil
	}
	// etcd logs errors about connections it is cutting while closing.
	s.level.SetLevel(zapcore.DPanicLevel)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Close()
	}()
	select {
	case <-done:
	case <-time.After(stopGrace):
		// Watch streams never end by themselves: without this, Close
		// waits for etcd's request timeout (5s and more).
		for _, g := range grpcs {
			g.Stop()
		}
		<-done
	}
	for range e.Err() { // closed by Close; errors here are from closing
	}
	s.log.Info("datastore stopped", "data_dir", s.cfg.DataDir)
	return nil
}

// Run starts the member and serves until ctx ends (then stops it and
// returns nil) or the server fails (then returns the error).
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	e := s.etcd
	s.mu.Unlock()
	var runErr error
	select {
	case <-ctx.Done():
	case err, ok := <-e.Err():
		if ok && err != nil {
			runErr = fmt.Errorf("embedded etcd %q: %w", s.cfg.Name, err)
		}
	case <-e.Server.StopNotify():
		runErr = fmt.Errorf("embedded etcd %q: server stopped", s.cfg.Name)
	}
	if err := s.Stop(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}
