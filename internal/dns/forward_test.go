package dns

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

// stubUpstream is a DNS server on loopback standing in for an upstream
// resolver: example.test. has one A record, big.example.test. 80, and
// anything else is NXDOMAIN. It counts queries by transport.
type stubUpstream struct {
	addr     string
	udp, tcp atomic.Int64
	names    atomic.Value // []string: questions seen
}

func startStubUpstream(t testing.TB, tag string) *stubUpstream {
	t.Helper()
	st := &stubUpstream{}
	st.names.Store([]string{})
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		if strings.HasPrefix(w.LocalAddr().Network(), "udp") {
			st.udp.Add(1)
		} else {
			st.tcp.Add(1)
		}
		st.names.Store(append(st.names.Load().([]string), r.Question[0].Name))
		m := new(mdns.Msg).SetReply(r)
		m.RecursionAvailable = true
		switch strings.ToLower(r.Question[0].Name) {
		case "example.test.":
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: net.ParseIP("192.0.2.1")})
			m.Answer = append(m.Answer, &mdns.TXT{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 30}, Txt: []string{tag}})
		case "big.example.test.":
			for i := range 80 {
				m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: net.IPv4(198, 51, 100, byte(i+1))})
			}
		default:
			m.Rcode = mdns.RcodeNameError
		}
		if strings.HasPrefix(w.LocalAddr().Network(), "udp") {
			m.Truncate(maxUDPSize(r))
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for range 20 {
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	if ln == nil {
		t.Fatalf("no TCP port next to UDP: %v", err)
	}
	st.addr = pc.LocalAddr().String()
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return st
}

func TestForwarding(t *testing.T) {
	up := startStubUpstream(t, "default")
	zoneUp := startStubUpstream(t, "zone")
	// A closed port: the first upstream fails, the second answers.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	ts := startServer(t, nil, func(c *Config) {
		c.Resolvers = []string{deadAddr, up.addr}
		c.ZoneResolvers = map[string][]string{"corp.test": {zoneUp.addr}}
		c.Timeout = 1
	})

	t.Run("udp", func(t *testing.T) {
		resp := query(t, ts.dns, "udp", "example.test.", mdns.TypeA)
		if diff := cmp.Diff([]string{"A 192.0.2.1", `TXT "default"`}, rrStrings(resp.Answer)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if resp.Authoritative {
			t.Errorf("a forwarded answer is marked authoritative")
		}
	})
	t.Run("tcp", func(t *testing.T) {
		before := up.tcp.Load()
		resp := query(t, ts.dns, "tcp", "example.test.", mdns.TypeA)
		if len(resp.Answer) != 2 || up.tcp.Load() == before {
			t.Errorf("TCP query not forwarded over TCP: %v", resp.Answer)
		}
	})
	t.Run("nxdomain passes through", func(t *testing.T) {
		if resp := query(t, ts.dns, "udp", "nope.test.", mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
			t.Errorf("rcode %s, want NXDOMAIN", mdns.RcodeToString[resp.Rcode])
		}
	})
	t.Run("upstream truncation is retried over TCP", func(t *testing.T) {
		before := up.tcp.Load()
		edns := query(t, ts.dns, "udp", "big.example.test.", mdns.TypeA, func(m *mdns.Msg) { m.SetEdns0(4096, false) })
		if edns.Truncated || len(edns.Answer) != 80 {
			t.Errorf("EDNS 4096: TC=%v, %d answers, want all 80", edns.Truncated, len(edns.Answer))
		}
		plain := query(t, ts.dns, "udp", "big.example.test.", mdns.TypeA)
		if !plain.Truncated || len(plain.Answer) >= 80 {
			t.Errorf("plain UDP: TC=%v, %d answers, want TC", plain.Truncated, len(plain.Answer))
		}
		if up.tcp.Load() == before {
			t.Errorf("the upstream was never asked over TCP")
		}
		full := query(t, ts.dns, "tcp", "big.example.test.", mdns.TypeA)
		if len(full.Answer) != 80 {
			t.Errorf("TCP: %d answers, want 80", len(full.Answer))
		}
	})
	t.Run("zone resolvers", func(t *testing.T) {
		resp := query(t, ts.dns, "udp", "example.test.", mdns.TypeTXT)
		if got := rrStrings(resp.Answer); len(got) == 0 || !strings.Contains(got[len(got)-1], "default") {
			t.Errorf("default upstream not used: %v", got)
		}
		query(t, ts.dns, "udp", "host.corp.test.", mdns.TypeA)
		if seen := zoneUp.names.Load().([]string); len(seen) != 1 || seen[0] != "host.corp.test." {
			t.Errorf("zone upstream saw %v", seen)
		}
	})
	t.Run("our zones are never forwarded", func(t *testing.T) {
		n := len(up.names.Load().([]string))
		query(t, ts.dns, "udp", "nope.mesos.", mdns.TypeA)
		query(t, ts.dns, "udp", "x.dcos.thisdcos.directory.", mdns.TypeA)
		if seen := up.names.Load().([]string); len(seen) != n {
			t.Errorf("upstream asked for %v", seen[n:])
		}
	})
}

func TestForwardingFailure(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	ts := startServer(t, nil, func(c *Config) { c.Resolvers = []string{deadAddr}; c.Timeout = 1 })
	c := &mdns.Client{Net: "udp", Timeout: 10 * time.Second}
	resp, _, err := c.Exchange(new(mdns.Msg).SetQuestion("example.test.", mdns.TypeA), ts.dns)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Rcode != mdns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
	}
	if v := metric(t, ts.http, `tabby_dns_responses_total{result="servfail"}`); v != 1 {
		t.Errorf("servfail count %v, want 1", v)
	}
}

func TestExternalOff(t *testing.T) {
	up := startStubUpstream(t, "default")
	ts := startServer(t, nil, func(c *Config) { c.Resolvers = []string{up.addr}; c.ExternalOn = false })
	if resp := query(t, ts.dns, "udp", "example.test.", mdns.TypeA); resp.Rcode != mdns.RcodeRefused {
		t.Errorf("rcode %s, want REFUSED", mdns.RcodeToString[resp.Rcode])
	}
	if n := up.udp.Load() + up.tcp.Load(); n != 0 {
		t.Errorf("upstream asked %d times", n)
	}
}

func ExampleConfig() {
	cfg, err := ParseConfig([]byte(`{"domain": "Mesos", "ttl": 30, "IPSources": ["host", "netinfo"], "resolvers": ["10.0.0.2"]}`))
	if err != nil {
		panic(err)
	}
	cfg.Normalize()
	fmt.Println(cfg.Domain, cfg.TTL, cfg.IPSources, cfg.SOAMname, cfg.upstreams())
	// Output: mesos 30 [host netinfo] ns1.mesos. [10.0.0.2:53]
}
