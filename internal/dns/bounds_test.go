package dns

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// holdingUpstream is a stub upstream on loopback that answers A
// 192.0.2.1 for every name, except that it holds names starting with
// "hold-" until release (or the test's end) and never answers names
// starting with "hang-". It serves UDP only.
type holdingUpstream struct {
	addr     string
	received atomic.Int64
	release  func()
}

func startHoldingUpstream(t *testing.T) *holdingUpstream {
	t.Helper()
	u := &holdingUpstream{}
	gate, done := make(chan struct{}), make(chan struct{})
	var once sync.Once
	u.release = func() { once.Do(func() { close(gate) }) }
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		u.received.Add(1)
		name := strings.ToLower(r.Question[0].Name)
		switch {
		case strings.HasPrefix(name, "hang-"):
			<-done
			return
		case strings.HasPrefix(name, "hold-"):
			<-gate
		}
		m := new(mdns.Msg).SetReply(r)
		m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: net.ParseIP("192.0.2.1")}}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	srv := &mdns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	// Runs before the shutdown (cleanups run last-registered first): the
	// held handlers return, so the shutdown does not wait for them.
	t.Cleanup(func() { u.release(); close(done) })
	return u
}

// TestForwardInFlightBound: with MaxForwardsInFlight forwards waiting for
// the upstream, one more query gets SERVFAIL at once (and is counted);
// the waiting ones are answered, and the slots are free again after.
func TestForwardInFlightBound(t *testing.T) {
	up := startHoldingUpstream(t)
	ts := startServer(t, nil, func(c *Config) {
		c.Resolvers = []string{up.addr}
		c.MaxForwardsInFlight = 2
		c.Timeout = 60 // the held forwards must not time out
	})
	answers := make(chan *mdns.Msg, 2)
	for i := range 2 {
		go func() {
			c := &mdns.Client{Net: "udp", Timeout: 90 * time.Second}
			resp, _, err := c.Exchange(new(mdns.Msg).SetQuestion("hold-"+string(rune('a'+i))+".test.", mdns.TypeA), ts.dns)
			if err != nil {
				t.Errorf("held query: %v", err)
			}
			answers <- resp
		}()
	}
	waitFor(t, "the upstream to hold two queries", func() bool { return up.received.Load() == 2 })
	resp := query(t, ts.dns, "udp", "third.test.", mdns.TypeA)
	if resp.Rcode != mdns.RcodeServerFailure {
		t.Errorf("third query with 2 in flight: %s; want SERVFAIL", mdns.RcodeToString[resp.Rcode])
	}
	if n := up.received.Load(); n != 2 {
		t.Errorf("the upstream got %d queries; want the third never sent", n)
	}
	if v := metric(t, ts.http, "tabby_dns_forward_busy_total"); v != 1 {
		t.Errorf("tabby_dns_forward_busy_total = %v; want 1", v)
	}
	up.release()
	for range 2 {
		if r := <-answers; r == nil || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("held query answered %v; want A 192.0.2.1", r)
		}
	}
	if resp := query(t, ts.dns, "udp", "after.test.", mdns.TypeA); resp.Rcode != mdns.RcodeSuccess {
		t.Errorf("query after the held ones: %s; want it forwarded", mdns.RcodeToString[resp.Rcode])
	}
}

// TestForwardDeadline: a forward to an upstream that never answers ends
// with SERVFAIL at its deadline and frees its slot, so the next query (the
// only slot) is forwarded.
func TestForwardDeadline(t *testing.T) {
	up := startHoldingUpstream(t)
	ts := startServer(t, nil, func(c *Config) {
		c.Resolvers = []string{up.addr}
		c.MaxForwardsInFlight = 1
		c.Timeout = 1
	})
	c := &mdns.Client{Net: "udp", Timeout: 30 * time.Second}
	resp, _, err := c.Exchange(new(mdns.Msg).SetQuestion("hang-a.test.", mdns.TypeA), ts.dns)
	if err != nil {
		t.Fatalf("query to a silent upstream: %v; want SERVFAIL, not silence", err)
	}
	if resp.Rcode != mdns.RcodeServerFailure {
		t.Errorf("query to a silent upstream: %s; want SERVFAIL", mdns.RcodeToString[resp.Rcode])
	}
	if resp := query(t, ts.dns, "udp", "next.test.", mdns.TypeA); resp.Rcode != mdns.RcodeSuccess {
		t.Errorf("next query: %s; want it forwarded (the slot is free)", mdns.RcodeToString[resp.Rcode])
	}
}
