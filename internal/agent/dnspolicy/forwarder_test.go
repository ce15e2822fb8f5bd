package dnspolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// fakeWriter records what the forwarder writes; gate, when set, holds
// every Add until it is closed; fail makes Add fail.
type fakeWriter struct {
	mu    sync.Mutex
	adds  []policy.Learned
	gate  chan struct{}
	fail  error
	calls int
}

func (w *fakeWriter) Add(ctx context.Context, elems []policy.Learned) error {
	if w.gate != nil {
		select {
		case <-w.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.fail != nil {
		return w.fail
	}
	w.adds = append(w.adds, elems...)
	return nil
}

func (w *fakeWriter) callCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls
}

func (w *fakeWriter) learned() []policy.Learned {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.adds)
}

// upstream is a stub resolver on loopback: name → answer records.
func upstream(t *testing.T, answers map[string][]string) string {
	t.Helper()
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		for _, s := range answers[strings.ToLower(q.Question[0].Name)] {
			rr, err := mdns.NewRR(s)
			if err != nil {
				panic(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	u, tc := &mdns.Server{PacketConn: pc, Handler: h}, &mdns.Server{Listener: ln, Handler: h}
	go u.ActivateAndServe()
	go tc.ActivateAndServe()
	t.Cleanup(func() { u.Shutdown(); tc.Shutdown() })
	return pc.LocalAddr().String()
}

// learnedRuleset has two learned sets per family: a: api.example.com,
// b: *.example.org.
func learnedRuleset() *policy.Ruleset {
	return &policy.Ruleset{Sets: []*policy.Set{
		{Name: "d4-a", Type: policy.SetLearned4, Domains: []string{"api.example.com"}},
		{Name: "d4-b", Type: policy.SetLearned4, Domains: []string{"*.example.org"}},
		{Name: "d6-a", Type: policy.SetLearned6, Domains: []string{"api.example.com"}},
		{Name: "d6-b", Type: policy.SetLearned6, Domains: []string{"*.example.org"}},
	}}
}

// serve starts a forwarder on loopback and returns it with its address.
func serve(t *testing.T, cfg Config, w SetWriter) (*Forwarder, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = netip.MustParseAddrPort(pc.LocalAddr().String())
	f, err := New(cfg, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.SetRuleset(learnedRuleset())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, pc, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return f, pc.LocalAddr().String()
}

func ask(t *testing.T, server, name string, qtype uint16, network string) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	r, _, err := c.Exchange(q, server)
	if err != nil {
		t.Fatalf("ask %s: %v", name, err)
	}
	return r
}

func names(ls []policy.Learned) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Set+" "+l.Addr.String())
	}
	slices.Sort(out)
	return out
}

// TestForwarderLearns: the addresses of an answer go to the sets whose
// patterns match a name of its CNAME chain, with TTL + grace; names no
// pattern matches add nothing; AAAA goes to the IPv6 sets.
func TestForwarderLearns(t *testing.T) {
	up := upstream(t, map[string][]string{
		"api.example.com.":   {"api.example.com. 30 IN A 192.0.2.1", "api.example.com. 30 IN A 192.0.2.2"},
		"www.a.example.org.": {"www.a.example.org. 10 IN CNAME edge.cdn.test.", "edge.cdn.test. 20 IN CNAME e1.cdn.test.", "e1.cdn.test. 5 IN A 198.51.100.7", "unrelated.test. 5 IN A 203.0.113.9"},
		"v6.example.org.":    {"v6.example.org. 30 IN AAAA 2001:db8::7"},
		"other.example.com.": {"other.example.com. 30 IN A 192.0.2.99"},
		"alias.example.net.": {"alias.example.net. 30 IN CNAME api.example.com.", "api.example.com. 30 IN A 192.0.2.3"},
	})
	w := &fakeWriter{}
	_, addr := serve(t, Config{Upstreams: []string{up}, Grace: 7 * time.Second}, w)

	r := ask(t, addr, "API.example.com", mdns.TypeA, "udp")
	if len(r.Answer) != 2 {
		t.Fatalf("answer = %v, want the upstream's two records", r.Answer)
	}
	ask(t, addr, "www.a.example.org", mdns.TypeA, "tcp")
	ask(t, addr, "v6.example.org", mdns.TypeAAAA, "udp")
	ask(t, addr, "other.example.com", mdns.TypeA, "udp")
	ask(t, addr, "alias.example.net", mdns.TypeA, "udp")
	got := names(w.learned())
	want := []string{"d4-a 192.0.2.1", "d4-a 192.0.2.2", "d4-a 192.0.2.3", "d4-b 198.51.100.7", "d6-b 2001:db8::7"}
	if !slices.Equal(got, want) {
		t.Fatalf("learned = %q, want %q", got, want)
	}
	for _, l := range w.learned() {
		if l.Addr.String() == "198.51.100.7" && l.Timeout != 12*time.Second {
			t.Errorf("timeout of %v = %v, want its TTL 5s + grace 7s", l.Addr, l.Timeout)
		}
	}
}

// TestForwarderRepliesAfterTheWrite: no answer reaches the client before
// the kernel write returned.
func TestForwarderRepliesAfterTheWrite(t *testing.T) {
	up := upstream(t, map[string][]string{"api.example.com.": {"api.example.com. 30 IN A 192.0.2.1"}})
	w := &fakeWriter{gate: make(chan struct{})}
	_, addr := serve(t, Config{Upstreams: []string{up}}, w)
	got := make(chan *mdns.Msg, 1)
	go func() {
		c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
		q := new(mdns.Msg)
		q.SetQuestion("api.example.com.", mdns.TypeA)
		r, _, _ := c.Exchange(q, addr)
		got <- r
	}()
	select {
	case r := <-got:
		t.Fatalf("the answer arrived before the set write finished: %v", r)
	case <-time.After(300 * time.Millisecond):
	}
	close(w.gate)
	select {
	case r := <-got:
		if r == nil || len(r.Answer) != 1 {
			t.Fatalf("answer after the write = %v, want one A record", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer after the write finished")
	}
}

// TestForwarderFailsClosed: when the write fails the client gets
// SERVFAIL, not an answer whose addresses it could not reach.
func TestForwarderFailsClosed(t *testing.T) {
	up := upstream(t, map[string][]string{"api.example.com.": {"api.example.com. 30 IN A 192.0.2.1"}})
	_, addr := serve(t, Config{Upstreams: []string{up}}, &fakeWriter{fail: errors.New("netlink: boom")})
	if r := ask(t, addr, "api.example.com", mdns.TypeA, "udp"); r.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("rcode = %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
}

// TestForwarderBounds: a storm of names cannot grow a set past
// MaxElements (drops are counted); a name with many addresses has all of
// them added (up to the bound); repeated lookups of a cached answer do
// not write again until half the grace is used.
func TestForwarderBounds(t *testing.T) {
	answers := map[string][]string{}
	for i := range 50 {
		n := fmt.Sprintf("s%d.example.org.", i)
		answers[n] = []string{fmt.Sprintf("%s 30 IN A 10.0.%d.%d", n, i/200, i%200+1)}
	}
	var many []string
	for i := range 200 {
		many = append(many, fmt.Sprintf("api.example.com. 30 IN A 10.1.%d.%d", i/200, i%200+1))
	}
	answers["api.example.com."] = many
	up := upstream(t, answers)
	w := &fakeWriter{}
	f, addr := serve(t, Config{Upstreams: []string{up}, MaxElements: 20}, w)
	for i := range 50 {
		ask(t, addr, fmt.Sprintf("s%d.example.org", i), mdns.TypeA, "udp")
	}
	r := ask(t, addr, "api.example.com", mdns.TypeA, "tcp")
	if len(r.Answer) != 200 {
		t.Fatalf("answer has %d records, want 200", len(r.Answer))
	}
	per := map[string]int{}
	for _, l := range w.learned() {
		per[l.Set]++
	}
	if per["d4-b"] != 20 || per["d4-a"] != 20 {
		t.Fatalf("learned per set = %v, want 20 each (the bound)", per)
	}
	if d := f.Dropped(); d != 30+180 {
		t.Errorf("dropped = %d, want %d", d, 30+180)
	}
	calls := w.callCount()
	for range 5 {
		ask(t, addr, "s1.example.org", mdns.TypeA, "udp")
	}
	if n := w.callCount() - calls; n != 0 {
		t.Errorf("5 lookups of a fresh answer made %d writes, want none", n)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no listen", Config{Upstreams: []string{"127.0.0.1:53"}}, "dns policy listen"},
		{"no upstream", Config{Listen: netip.MustParseAddrPort("127.0.0.1:1053")}, "dns policy upstreams"},
		{"bad upstream", Config{Listen: netip.MustParseAddrPort("127.0.0.1:1053"), Upstreams: []string{"dns.example:53"}}, `"dns.example:53" is not an IP address`},
		{"itself", Config{Listen: netip.MustParseAddrPort("127.0.0.1:1053"), Upstreams: []string{"127.0.0.1:1053"}}, "the forwarder itself"},
		{"two of a family", Config{Listen: netip.MustParseAddrPort("127.0.0.1:1053"), ListenAlso: netip.MustParseAddrPort("127.0.0.2:1053"), Upstreams: []string{"127.0.0.1"}}, "other IP family"},
		{"negative grace", Config{Listen: netip.MustParseAddrPort("127.0.0.1:1053"), Upstreams: []string{"127.0.0.1"}, Grace: -time.Second}, "grace: -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.WithDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestForwarderRewrite: after the kernel lost the learned sets, Rewrite
// writes every element still valid again, with the time it has left.
func TestForwarderRewrite(t *testing.T) {
	up := upstream(t, map[string][]string{"api.example.com.": {"api.example.com. 30 IN A 192.0.2.1"}})
	w := &fakeWriter{}
	f, addr := serve(t, Config{Upstreams: []string{up}, Grace: 10 * time.Second}, w)
	ask(t, addr, "api.example.com", mdns.TypeA, "udp")
	if err := f.Rewrite(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := w.learned()
	if len(got) != 2 || got[1].Addr != got[0].Addr || got[1].Timeout > got[0].Timeout || got[1].Timeout < 39*time.Second {
		t.Fatalf("writes = %+v, want the answer's address twice, the second with about 40 s left", got)
	}
}
