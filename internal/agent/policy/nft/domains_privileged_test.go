package nft

// Egress by DNS name, end to end: real nftables, real DNS over UDP and TCP,
// the agent's forwarder (internal/agent/dnspolicy) in the host namespace,
// and a stub upstream resolver in the ext namespace that answers test
// names with addresses of the ext namespace (never a real resolver).

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/agent/dnspolicy"
	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/netns"
)

const stubIP = "192.0.2.253"

// stubDNS is an authoritative stub: name → addresses, one TTL.
type stubDNS struct {
	mu    sync.Mutex
	ttl   uint32
	names map[string][]string // FQDN → IPv4 addresses
	cname map[string]string   // FQDN → FQDN
	all   func(name string) []string
}

func (s *stubDNS) set(name string, addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names[mdns.Fqdn(name)] = addrs
}

func (s *stubDNS) ServeDNS(w mdns.ResponseWriter, q *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	s.mu.Lock()
	defer s.mu.Unlock()
	name := q.Question[0].Name
	for range 4 {
		t, ok := s.cname[name]
		if !ok {
			break
		}
		m.Answer = append(m.Answer, &mdns.CNAME{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: s.ttl}, Target: t})
		name = t
	}
	addrs := s.names[name]
	if s.all != nil && addrs == nil {
		addrs = s.all(name)
	}
	if q.Question[0].Qtype == mdns.TypeA {
		for _, a := range addrs {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: s.ttl}, A: net.ParseIP(a)})
		}
	}
	if len(m.Answer) == 0 && addrs == nil {
		m.Rcode = mdns.RcodeNameError
	}
	w.WriteMsg(m)
}

// serveStub runs the stub on stubIP:53 (UDP and TCP) in the ext
// namespace, and on the other ports given.
func serveStub(t testing.TB, l *lab, s *stubDNS, ports ...int) {
	t.Helper()
	serveStubOn(t, l, s, stubIP, ports...)
}

// serveStubOn is serveStub on another address.
func serveStubOn(t testing.TB, l *lab, s *stubDNS, ip string, ports ...int) {
	t.Helper()
	in(t, l.ext.path, func() error { return addAddr("ext0", ip+"/32") })
	for _, port := range append([]int{53}, ports...) {
		var pc net.PacketConn
		var ln net.Listener
		addr := net.JoinHostPort(ip, fmt.Sprint(port))
		in(t, l.ext.path, func() (err error) {
			if pc, err = net.ListenPacket("udp", addr); err != nil {
				return err
			}
			ln, err = net.Listen("tcp", addr)
			return err
		})
		u := &mdns.Server{PacketConn: pc, Handler: s}
		tc := &mdns.Server{Listener: ln, Handler: s}
		go u.ActivateAndServe()
		go tc.ActivateAndServe()
		t.Cleanup(func() { u.Shutdown(); tc.Shutdown() })
	}
}

// startForwarder runs a forwarder on hostIP:1053 in the host namespace,
// writing through a Learner; stop ends it.
func startForwarder(t testing.TB, l *lab, cfg dnspolicy.Config, rs *policy.Ruleset, restore bool) (f *dnspolicy.Forwarder, stop func()) {
	t.Helper()
	learner := NewLearner(int(l.host.fd.Fd()))
	cfg.Listen = netip.MustParseAddrPort(hostIP + ":1053")
	cfg.Upstreams = []string{stubIP + ":53"}
	// Upstream sockets are opened in the host namespace, never in the
	// test's own.
	cfg.Dial = func(ctx context.Context, network, address string) (c net.Conn, err error) {
		err = netns.Do(l.host.path, func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, address)
			return err
		})
		return c, err
	}
	f, err := dnspolicy.New(cfg, learner, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if restore {
		// As the agent does: restore before the first ruleset is known.
		if err := f.Restore(context.Background(), learner); err != nil {
			t.Fatal(err)
		}
	}
	f.SetRuleset(rs)
	var pc net.PacketConn
	var ln net.Listener
	in(t, l.host.path, func() (err error) {
		if pc, err = net.ListenPacket("udp", cfg.Listen.String()); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", cfg.Listen.String())
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, pc, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			learner.Close()
		})
	}
	t.Cleanup(stop)
	return f, stop
}

// resolve asks the stub's address from the container (so the query is
// intercepted) and returns the A records.
func resolve(t testing.TB, c *container, name, net string) []string {
	t.Helper()
	var out []string
	in(t, c.ns, func() error {
		cl := &mdns.Client{Net: net, Timeout: okDeadline}
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		r, _, err := cl.Exchange(q, stubIP+":53")
		if err != nil {
			return fmt.Errorf("look up %s over %s: %w", name, net, err)
		}
		for _, rr := range r.Answer {
			if a, ok := rr.(*mdns.A); ok {
				out = append(out, a.A.String())
			}
		}
		return nil
	})
	return out
}

// TestPrivilegedEgressByDomain: an egress rule allowing TCP to
// api.ok.test and *.wild.test, the container's DNS intercepted:
//   - an allowed name's address is reachable right after the lookup, a
//     neighbouring name's is not, nor an address nobody looked up;
//   - the wildcard matches one or more labels, not the bare domain;
//   - CNAME chains: an allowed name that is a CNAME allows the target's
//     addresses;
//   - a changed answer moves access to the new address once the old one's
//     TTL plus grace has passed;
//   - a restarted agent (new driver, new forwarder restored from the
//     kernel) keeps what was learned;
//   - the first connection after each of 40 lookups of new names is never
//     dropped (a dropped SYN would take a 1 s retransmission);
//   - a lookup storm of 300 names is bounded by the set's maximum.
func TestPrivilegedEgressByDomain(t *testing.T) {
	l := newLab(t)
	c := l.addContainer("client", "10.65.0.2")
	port := serveTCP(t, l.ext.path, "")
	var extra []string
	for i := 20; i < 70; i++ {
		extra = append(extra, fmt.Sprintf("192.0.2.%d", i))
	}
	in(t, l.ext.path, func() error {
		for _, a := range extra {
			if err := addAddr("ext0", a+"/32"); err != nil {
				return err
			}
		}
		return nil
	})
	stub := &stubDNS{ttl: 1, names: map[string][]string{}, cname: map[string]string{}}
	stub.set("api.ok.test", "192.0.2.21")
	stub.set("other.ok.test", "192.0.2.22")
	stub.set("a.b.wild.test", "192.0.2.24")
	stub.set("wild.test", "192.0.2.25")
	stub.set("target.elsewhere.test", "192.0.2.27")
	stub.cname["alias.wild.test."] = "target.elsewhere.test."
	stub.all = func(name string) []string { return nil }
	serveStub(t, l, stub)

	s := domainRuleState(c, "api.ok.test", "*.wild.test", "*.storm.test")
	cfg := dnspolicy.Config{Grace: time.Second, MaxElements: 64}
	// The egress policy applies to a query as sent: without the DNS rules
	// the intercepted lookup is dropped too.
	noDNS := domainRuleState(c, "api.ok.test", "*.wild.test", "*.storm.test")
	noDNS.GlobalPolicies[0].Spec.Egress = noDNS.GlobalPolicies[0].Spec.Egress[2:]
	rs := mustCompile(t, noDNS)
	mustApply(t, l.d, rs)
	_, stop := startForwarder(t, l, cfg, rs, false)
	in(t, c.ns, func() error {
		q := new(mdns.Msg)
		q.SetQuestion("api.ok.test.", mdns.TypeA)
		if _, _, err := (&mdns.Client{Timeout: dropDeadline}).Exchange(q, stubIP+":53"); err == nil {
			return fmt.Errorf("a lookup got an answer although the workload's policy allows no DNS")
		}
		return nil
	})
	rs = mustCompile(t, s)
	mustApply(t, l.d, rs)
	stop()
	_, stop = startForwarder(t, l, cfg, rs, false)

	connect := func(addr string, d time.Duration) error {
		_, err := tcpAsk(c.ns, addr, port, d)
		return err
	}
	reach := func(what, addr string) {
		t.Helper()
		mustReach(t, what, func(d time.Duration) (string, error) { return tcpAsk(c.ns, addr, port, d) })
	}
	noReach := func(what, addr string) {
		t.Helper()
		mustNotReach(t, what, func(d time.Duration) (string, error) { return tcpAsk(c.ns, addr, port, d) })
	}

	// Nothing looked up yet: nothing reachable.
	noReach("api.ok.test's address before any lookup", "192.0.2.21")
	if got := resolve(t, c, "api.ok.test", "udp"); len(got) != 1 || got[0] != "192.0.2.21" {
		t.Fatalf("lookup api.ok.test = %v, want [192.0.2.21]", got)
	}
	if err := connect("192.0.2.21", 900*time.Millisecond); err != nil {
		t.Errorf("first connection to api.ok.test right after the lookup: %v", err)
	}
	resolve(t, c, "other.ok.test", "udp")
	noReach("other.ok.test (a neighbouring name)", "192.0.2.22")
	noReach("an address nobody looked up", "192.0.2.23")
	// A resolver the node does not intercept answers the workload
	// directly (its policy allows DNS anywhere): nothing is learned.
	stub.set("side.wild.test", "192.0.2.28")
	serveStubOn(t, l, stub, "192.0.2.252")
	in(t, c.ns, func() error {
		q := new(mdns.Msg)
		q.SetQuestion("side.wild.test.", mdns.TypeA)
		r, _, err := (&mdns.Client{Timeout: okDeadline}).Exchange(q, "192.0.2.252:53")
		if err == nil && len(r.Answer) != 1 {
			err = fmt.Errorf("answer %v, want one A record", r.Answer)
		}
		return err
	})
	noReach("side.wild.test, resolved through a resolver the node does not intercept", "192.0.2.28")

	// Wildcard, over TCP DNS.
	resolve(t, c, "a.b.wild.test", "tcp")
	reach("a.b.wild.test (*.wild.test, two labels)", "192.0.2.24")
	resolve(t, c, "wild.test", "udp")
	noReach("wild.test (the wildcard needs a label)", "192.0.2.25")
	// CNAME: alias.wild.test → target.elsewhere.test.
	if got := resolve(t, c, "alias.wild.test", "udp"); len(got) != 1 || got[0] != "192.0.2.27" {
		t.Fatalf("lookup alias.wild.test = %v, want [192.0.2.27] through the CNAME", got)
	}
	reach("alias.wild.test's CNAME target", "192.0.2.27")

	// Changed answer: api.ok.test moves to .26; after TTL (1 s) + grace
	// (1 s) the old address is gone and the new one is allowed.
	stub.set("api.ok.test", "192.0.2.26")
	time.Sleep(2500 * time.Millisecond)
	if got := resolve(t, c, "api.ok.test", "udp"); len(got) != 1 || got[0] != "192.0.2.26" {
		t.Fatalf("lookup api.ok.test = %v, want [192.0.2.26]", got)
	}
	reach("api.ok.test's new address", "192.0.2.26")
	noReach("api.ok.test's old address after TTL + grace", "192.0.2.21")

	// Restart: a new driver and forwarder; learned entries with time left
	// stay reachable without a new lookup.
	stub.mu.Lock()
	stub.ttl = 30
	stub.mu.Unlock()
	resolve(t, c, "a.b.wild.test", "udp")
	stop()
	l.d = l.host.driver()
	ch := mustApply(t, l.d, mustCompile(t, s))
	if ch.Replaced {
		t.Fatalf("the restarted driver replaced the table: %+v", ch)
	}
	f, _ := startForwarder(t, l, cfg, rs, true)
	reach("a learned address after an agent restart", "192.0.2.24")

	// First connection after each lookup of a new name.
	for i := 30; i < 70; i++ {
		name := fmt.Sprintf("n%d.wild.test", i)
		addr := fmt.Sprintf("192.0.2.%d", i)
		stub.set(name, addr)
		if got := resolve(t, c, name, "udp"); len(got) != 1 || got[0] != addr {
			t.Fatalf("lookup %s = %v, want [%s]", name, got, addr)
		}
		if err := connect(addr, 900*time.Millisecond); err != nil {
			t.Errorf("first connection to %s (%s) right after its lookup: %v", name, addr, err)
		}
	}

	// Storm: 300 names with distinct addresses cannot grow the set past
	// its bound (64, which the kernel enforces too).
	stub.mu.Lock()
	stub.all = func(name string) []string {
		var i int
		if _, err := fmt.Sscanf(name, "s%d.storm.test.", &i); err != nil {
			return nil
		}
		return []string{fmt.Sprintf("10.99.%d.%d", i/250, i%250+1)}
	}
	stub.mu.Unlock()
	for i := range 300 {
		resolve(t, c, fmt.Sprintf("s%d.storm.test", i), "udp")
	}
	learned, err := NewLearner(int(l.host.fd.Fd())).Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range learned {
		if e.Addr.Is4() {
			n++
		}
	}
	if n > 64 {
		t.Errorf("after a storm of 300 names the IPv4 learned set holds %d elements, want at most 64", n)
	}
	if d := f.Dropped(); d < 300-64 {
		t.Errorf("dropped = %d, want at least %d counted", d, 300-64)
	}
	// What was learned before the storm still works.
	reach("a name learned before the storm", "192.0.2.69")
}
