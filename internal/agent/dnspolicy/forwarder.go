// Package dnspolicy is the agent's node-local DNS forwarder for egress
// policy by DNS name (docs/design/policy.md "Egress by DNS name"). The
// local workloads' DNS is DNATed to it (policy.DNSPolicy); it forwards each
// query to the configured upstream, reads the answer (A and AAAA, following
// CNAME chains), adds every address to the learned sets whose domain
// patterns match a name of the answer, with a timeout of the TTL plus a
// grace period, waits for the kernel to acknowledge, and only then passes
// the answer on. So the first connection after a lookup never races the
// set update.
//
// It imports the policy package for the ruleset's learned sets and
// miekg/dns; it must not import nftables or netlink code: the kernel is
// behind SetWriter (nft.Learner in production).
package dnspolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
)

// SetWriter puts learned addresses into the kernel's sets and returns once
// the kernel has them.
type SetWriter interface {
	Add(ctx context.Context, elems []policy.Learned) error
}

// SetDumper lists what the kernel's learned sets hold, with the time each
// element has left.
type SetDumper interface {
	Dump(ctx context.Context) ([]policy.Learned, error)
}

// Config configures a Forwarder.
type Config struct {
	// Listen is the address the forwarder serves UDP and TCP on: a local
	// address of the host, what policy.DNSPolicy redirects to.
	Listen netip.AddrPort
	// ListenAlso, optional, is a second address, of the other IP family (the
	// forwarder of a dual-stack node serves both).
	ListenAlso netip.AddrPort
	// Upstreams are the resolvers asked, in order ("ip:port"; port 53
	// when left out): `tabby dns` or the cluster's resolver.
	Upstreams []string
	// Grace is added to every answer's TTL: how long after the TTL a
	// learned address stays allowed (clients cache a little past it).
	Grace time.Duration
	// MaxTTL caps the TTL taken from answers.
	MaxTTL time.Duration
	// MaxElements bounds every learned set: an address that would grow a
	// full set is dropped (and counted), not added.
	MaxElements int
	// Timeout bounds one query: the upstream exchange and the kernel
	// write together.
	Timeout time.Duration
	// Dial opens the connection to an upstream; nil: a net.Dialer (in
	// the caller's network namespace). Tests pass one that dials inside
	// the namespace they serve.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Defaults.
const (
	DefaultGrace   = 60 * time.Second
	DefaultMaxTTL  = time.Hour
	DefaultTimeout = 5 * time.Second
	// maxChain bounds how many CNAMEs of an answer are followed.
	maxChain = 16
)

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.MaxElements == 0 {
		c.MaxElements = policy.DefaultMaxLearned
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	c.Upstreams = slices.Clone(c.Upstreams)
	for i, u := range c.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			c.Upstreams[i] = net.JoinHostPort(u, "53")
		}
	}
	return c
}

// Validate checks the configuration; errors name the field and value.
func (c Config) Validate() error {
	var errs []error
	if !c.Listen.IsValid() || c.Listen.Port() == 0 {
		errs = append(errs, fmt.Errorf("dns policy listen: %q is not an address and port", c.Listen.String()))
	}
	if c.ListenAlso.IsValid() && (c.ListenAlso.Port() == 0 || c.ListenAlso.Addr().Is4() == c.Listen.Addr().Is4()) {
		errs = append(errs, fmt.Errorf("dns policy listen: %q: the second address must be of the other IP family (one per family)", c.ListenAlso.String()))
	}
	if len(c.Upstreams) == 0 {
		errs = append(errs, errors.New("dns policy upstreams: none given; name `tabby dns` or the cluster's resolver"))
	}
	for _, u := range c.Upstreams {
		if _, err := netip.ParseAddrPort(u); err != nil {
			errs = append(errs, fmt.Errorf("dns policy upstream: %q is not an IP address and port", u))
		} else if ap := netip.MustParseAddrPort(u); ap == c.Listen || ap == c.ListenAlso {
			errs = append(errs, fmt.Errorf("dns policy upstream: %q is the forwarder itself", u))
		}
	}
	if c.Grace < 0 {
		errs = append(errs, fmt.Errorf("dns policy grace: %v is negative", c.Grace))
	}
	if c.MaxTTL < 0 {
		errs = append(errs, fmt.Errorf("dns policy max TTL: %v is negative", c.MaxTTL))
	}
	if c.MaxElements < 0 || c.MaxElements > 1<<24 {
		errs = append(errs, fmt.Errorf("dns policy max elements: %d is not in 1..%d", c.MaxElements, 1<<24))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("dns policy timeout: %v is negative", c.Timeout))
	}
	return errors.Join(errs...)
}

// learnedSet is one learned set of the current ruleset.
type learnedSet struct {
	name     string
	family   int
	patterns []api.DomainPattern
	elems    map[netip.Addr]time.Time // what we put there, until when
}

func (s *learnedSet) matches(names []string) bool {
	for _, p := range s.patterns {
		for _, n := range names {
			if p.Match(n) {
				return true
			}
		}
	}
	return false
}

// Forwarder is the node-local forwarder. Run serves; SetRuleset tells it
// the learned sets of what the driver programmed.
type Forwarder struct {
	cfg     Config
	log     *slog.Logger
	w       SetWriter
	now     func() time.Time
	udp     *mdns.Client
	tcp     *mdns.Client
	metrics *metrics

	poolMu sync.Mutex
	pool   map[string]chan *mdns.Conn // upstream → idle UDP sockets

	mu       sync.Mutex
	cache    *answerCache
	sets     map[string]*learnedSet
	restored map[string]map[netip.Addr]time.Time // from the kernel, for sets not in a ruleset yet
}

// New returns a forwarder. It starts nothing.
func New(cfg Config, w SetWriter, log *slog.Logger) (*Forwarder, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{
		cfg:     cfg,
		log:     log.With("component", "dns-policy"),
		w:       w,
		now:     time.Now,
		udp:     &mdns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: mdns.MaxMsgSize},
		tcp:     &mdns.Client{Net: "tcp", Timeout: cfg.Timeout},
		metrics: newMetrics(),
		cache:   newAnswerCache(maxCached),
		sets:    map[string]*learnedSet{},
	}, nil
}

// Prepare forgets the learned sets rs no longer has: call it before the
// driver applies rs, so no write goes to a set being deleted.
func (f *Forwarder) Prepare(rs *policy.Ruleset) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name := range f.sets {
		if s := rs.Set(name); s == nil || (s.Type != policy.SetLearned4 && s.Type != policy.SetLearned6) {
			delete(f.sets, name)
		}
	}
}

// sameSets reports whether rs has exactly the learned sets (and
// patterns) the forwarder has. Callers hold mu.
func (f *Forwarder) sameSets(rs *policy.Ruleset) bool {
	ds := rs.DomainSets()
	if len(ds) != len(f.sets) {
		return false
	}
	for _, s := range ds {
		old := f.sets[s.Name]
		if old == nil || len(old.patterns) != len(s.Domains) {
			return false
		}
		for i, p := range old.patterns {
			if p.String() != s.Domains[i] {
				return false
			}
		}
	}
	return true
}

// SetRuleset takes the learned sets of rs, which the driver has just
// programmed: answers from now on fill them.
func (f *Forwarder) SetRuleset(rs *policy.Ruleset) {
	f.mu.Lock()
	if !f.sameSets(rs) {
		// A cached answer was learned into the old sets only: a new
		// set must see the next answer.
		f.cache.clear()
	}
	f.mu.Unlock()
	f.Prepare(rs)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range rs.DomainSets() {
		old := f.sets[s.Name]
		ls := &learnedSet{name: s.Name, family: s.Type.Family(), elems: map[netip.Addr]time.Time{}}
		if old != nil {
			ls.elems = old.elems
		} else if r, ok := f.restored[s.Name]; ok {
			ls.elems = r
			delete(f.restored, s.Name)
		}
		for _, d := range s.Domains {
			p, err := api.ParseDomainPattern(d)
			if err != nil {
				continue // the compiler only emits parsed patterns
			}
			ls.patterns = append(ls.patterns, p)
		}
		f.sets[s.Name] = ls
	}
	n := 0
	for _, s := range f.sets {
		n += len(s.elems)
	}
	f.metrics.sets.Set(float64(len(f.sets)))
	f.metrics.elements.Set(float64(n))
}

// Rewrite writes every element the forwarder knows of, with the time it
// has left, again: call it when the kernel lost them (the driver rebuilt
// the table, emptying the learned sets), so clients holding cached answers
// keep their access. What cannot be written is forgotten, so the next
// answers write it.
func (f *Forwarder) Rewrite(ctx context.Context) error {
	now := f.now()
	var out []policy.Learned
	f.mu.Lock()
	for _, s := range f.sets {
		s.expire(now)
		for a, until := range s.elems {
			out = append(out, policy.Learned{Set: s.name, Addr: a, Timeout: until.Sub(now)})
		}
	}
	f.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	if err := f.w.Add(ctx, out); err != nil {
		f.Forget()
		return fmt.Errorf("rewrite %d learned elements: %w", len(out), err)
	}
	f.log.Info("learned elements written again after the table was rebuilt", "elements", len(out))
	return nil
}

// Forget drops the bookkeeping of every learned element: call it when the
// kernel lost them (the driver rebuilt the table), so the next answers
// write them again instead of trusting they are there.
func (f *Forwarder) Forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sets {
		s.elems = map[netip.Addr]time.Time{}
	}
	f.cache.clear()
	f.metrics.elements.Set(0)
}

// Restore reads what the kernel's learned sets hold (after an agent
// restart: the driver keeps the sets and their elements) into the
// bookkeeping that bounds them; a set the forwarder does not know yet
// gets its elements when a ruleset names it. Call it before serving.
func (f *Forwarder) Restore(ctx context.Context, d SetDumper) error {
	got, err := d.Dump(ctx)
	if err != nil {
		return fmt.Errorf("restore learned sets: %w", err)
	}
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, e := range got {
		until := now.Add(e.Timeout)
		if s := f.sets[e.Set]; s != nil {
			s.elems[e.Addr] = until
		} else {
			if f.restored == nil {
				f.restored = map[string]map[netip.Addr]time.Time{}
			}
			if f.restored[e.Set] == nil {
				f.restored[e.Set] = map[netip.Addr]time.Time{}
			}
			f.restored[e.Set][e.Addr] = until
		}
		n++
	}
	f.log.Info("learned sets restored from the kernel", "elements", n)
	return nil
}

// Run serves UDP and TCP on cfg.Listen (and ListenAlso) until ctx ends.
func (f *Forwarder) Run(ctx context.Context) error {
	var pcs []net.PacketConn
	var lns []net.Listener
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, ap := range []netip.AddrPort{f.cfg.Listen, f.cfg.ListenAlso} {
		if !ap.IsValid() {
			continue
		}
		addr := ap.String()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("dns policy: listen udp %s: %w", addr, err)
		}
		pcs = append(pcs, pc)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("dns policy: listen tcp %s: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	return f.ServeAll(ctx, pcs, lns)
}

// Serve serves on sockets the caller opened (in a namespace, say) until
// ctx ends; it closes them.
func (f *Forwarder) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	return f.ServeAll(ctx, []net.PacketConn{pc}, []net.Listener{ln})
}

// ServeAll is Serve on several sockets (one pair per family).
func (f *Forwarder) ServeAll(ctx context.Context, pcs []net.PacketConn, lns []net.Listener) error {
	var servers []*mdns.Server
	for _, pc := range pcs {
		servers = append(servers, &mdns.Server{PacketConn: pc, Handler: f, UDPSize: mdns.MaxMsgSize})
		f.log.Info("dns policy forwarder serving", "listen", pc.LocalAddr().String(), "upstreams", strings.Join(f.cfg.Upstreams, ","))
	}
	for _, ln := range lns {
		servers = append(servers, &mdns.Server{Listener: ln, Handler: f})
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ActivateAndServe() }()
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range servers {
		s.ShutdownContext(sctx)
	}
	f.closeIdle()
	return first
}

// ServeDNS forwards one query, learns from the answer, then replies.
func (f *Forwarder) ServeDNS(w mdns.ResponseWriter, q *mdns.Msg) {
	_, isTCP := w.RemoteAddr().(*net.TCPAddr)
	key, cacheable := cacheKey(q, isTCP)
	if cacheable {
		f.mu.Lock()
		b := f.cache.get(key, q, f.now(), isTCP)
		f.mu.Unlock()
		if b != nil {
			// Its addresses were learned when it was stored, with
			// timeouts past its TTL; the sets have not changed since.
			f.metrics.cached.Inc()
			w.Write(b)
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.Timeout)
	defer cancel()
	r, err := f.exchange(ctx, q, isTCP)
	if err != nil {
		f.metrics.queries.WithLabelValues("upstream_error").Inc()
		f.log.Debug("dns policy: upstream failed", "err", err)
		w.WriteMsg(servfail(q))
		return
	}
	if err := f.learn(ctx, q, r); err != nil {
		// Fail closed: the client asks again; an answer whose addresses
		// are not in the sets would only make its connections fail.
		f.metrics.queries.WithLabelValues("learn_error").Inc()
		f.log.Warn("dns policy: could not program learned addresses; answering SERVFAIL", "err", err)
		w.WriteMsg(servfail(q))
		return
	}
	f.metrics.queries.WithLabelValues("ok").Inc()
	if cacheable {
		f.mu.Lock()
		f.cache.put(key, r, f.now())
		f.mu.Unlock()
	}
	w.WriteMsg(r)
}

func servfail(q *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetRcode(q, mdns.RcodeServerFailure)
	return m
}

// exchange asks the upstreams in order, over the client's transport.
func (f *Forwarder) exchange(ctx context.Context, q *mdns.Msg, isTCP bool) (*mdns.Msg, error) {
	c := f.udp
	if isTCP {
		c = f.tcp
	}
	network := "udp"
	if isTCP {
		network = "tcp"
	}
	var errs []error
	for _, up := range f.cfg.Upstreams {
		r, err := f.ask(ctx, c, network, up, q)
		if err == nil {
			return r, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// ask sends one query to one upstream. UDP sockets are kept for the next
// queries (at most maxIdle per upstream): a socket per query costs more
// than the exchange on a node. A late answer to an earlier query on a
// reused socket is dropped by its ID.
func (f *Forwarder) ask(ctx context.Context, c *mdns.Client, network, up string, q *mdns.Msg) (*mdns.Msg, error) {
	var co *mdns.Conn
	idle := f.idle(network, up)
	if idle != nil {
		select {
		case co = <-idle:
		default:
		}
	}
	if co == nil {
		conn, err := f.cfg.Dial(ctx, network, up)
		if err != nil {
			return nil, err
		}
		co = &mdns.Conn{Conn: conn}
	}
	r, _, err := c.ExchangeWithConnContext(ctx, q, co)
	if err != nil || idle == nil {
		co.Close()
		return r, err
	}
	select {
	case idle <- co:
	default:
		co.Close()
	}
	return r, nil
}

// maxIdle bounds the UDP sockets kept per upstream.
const maxIdle = 16

func (f *Forwarder) idle(network, up string) chan *mdns.Conn {
	if network != "udp" {
		return nil
	}
	f.poolMu.Lock()
	defer f.poolMu.Unlock()
	if f.pool == nil {
		f.pool = map[string]chan *mdns.Conn{}
	}
	ch, ok := f.pool[up]
	if !ok {
		ch = make(chan *mdns.Conn, maxIdle)
		f.pool[up] = ch
	}
	return ch
}

// closeIdle closes the kept sockets.
func (f *Forwarder) closeIdle() {
	f.poolMu.Lock()
	defer f.poolMu.Unlock()
	for _, ch := range f.pool {
		for len(ch) > 0 {
			(<-ch).Close()
		}
	}
}

// chain is the question's name and the CNAME targets the answer leads
// to from it, lower case, fully qualified.
func chain(q *mdns.Msg, r *mdns.Msg) []string {
	if len(q.Question) == 0 {
		return nil
	}
	names := []string{strings.ToLower(mdns.Fqdn(q.Question[0].Name))}
	for range maxChain {
		grew := false
		for _, rr := range r.Answer {
			c, ok := rr.(*mdns.CNAME)
			if !ok || !slices.Contains(names, strings.ToLower(c.Hdr.Name)) {
				continue
			}
			if t := strings.ToLower(mdns.Fqdn(c.Target)); !slices.Contains(names, t) {
				names = append(names, t)
				grew = true
			}
		}
		if !grew {
			break
		}
	}
	return names
}

// learn adds the answer's addresses to the sets whose patterns match a
// name of its chain and waits for the kernel.
func (f *Forwarder) learn(ctx context.Context, q, r *mdns.Msg) error {
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) == 0 {
		return nil
	}
	names := chain(q, r)
	type addr struct {
		a   netip.Addr
		ttl time.Duration
	}
	var addrs []addr
	for _, rr := range r.Answer {
		if !slices.Contains(names, strings.ToLower(rr.Header().Name)) {
			continue
		}
		ttl := min(time.Duration(rr.Header().Ttl)*time.Second, f.cfg.MaxTTL)
		switch rr := rr.(type) {
		case *mdns.A:
			if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
				addrs = append(addrs, addr{a, ttl})
			}
		case *mdns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok && !a.Is4In6() {
				addrs = append(addrs, addr{a, ttl})
			}
		}
	}
	if len(addrs) == 0 {
		return nil
	}
	now := f.now()
	var out []policy.Learned
	f.mu.Lock()
	for _, s := range f.sets {
		if !s.matches(names) {
			continue
		}
		for _, a := range addrs {
			if (s.family == 4) != a.a.Is4() {
				continue
			}
			timeout := a.ttl + f.cfg.Grace
			until := now.Add(timeout)
			if _, ok := s.elems[a.a]; !ok && len(s.elems) >= f.cfg.MaxElements {
				s.expire(now)
				if len(s.elems) >= f.cfg.MaxElements {
					f.metrics.dropped.Inc()
					continue
				}
			}
			if old, ok := s.elems[a.a]; ok {
				if old.After(until.Add(-f.cfg.Grace / 2)) {
					// The kernel keeps it for the TTL and at least half
					// the grace: no write (a cached answer's lookups cost
					// no netlink round trip).
					continue
				}
				if old.After(until) {
					// Never shorten what the kernel has.
					until, timeout = old, old.Sub(now)
				}
			}
			s.elems[a.a] = until
			out = append(out, policy.Learned{Set: s.name, Addr: a.a, Timeout: timeout})
		}
	}
	f.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	start := time.Now()
	err := f.w.Add(ctx, out)
	f.metrics.writeSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		// The bookkeeping may now hold addresses the kernel lacks; they
		// only make the bound stricter until they expire.
		return err
	}
	f.metrics.learned.Add(float64(len(out)))
	return nil
}

// expire forgets elements whose timeout has passed (the kernel has removed
// them).
func (s *learnedSet) expire(now time.Time) {
	for a, until := range s.elems {
		if !until.After(now) {
			delete(s.elems, a)
		}
	}
}
