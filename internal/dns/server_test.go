package dns

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/dns/records"
)

var (
	myappHash = records.TaskHash("outergroup_subgroup_myapp.instance-5c2b9d1e-8f3a-11e8-9a0b-70b3d5800001._app.1")
	myappCan  = "myapp-subgroup-outergroup-" + myappHash + "-s1.marathon.mesos."
)

func startMesosServer(t *testing.T, edit func(*Config)) (*testServer, *fakeMaster) {
	t.Helper()
	fm := newFakeMaster(t, readFixture(t))
	ts := startServer(t, nil, func(c *Config) {
		c.Masters = []string{fm.URL}
		if edit != nil {
			edit(c)
		}
	})
	return ts, fm
}

func TestQueriesFromMesosState(t *testing.T) {
	ts, _ := startMesosServer(t, nil)
	soa := "SOA ns1.mesos. root.ns1.mesos."
	for _, tc := range []struct {
		name    string
		qname   string
		qtype   uint16
		rcode   int
		answer  []string
		extra   []string
		authSOA bool // the SOA is in the authority section
	}{
		{"task A, container IP", "myapp-subgroup-outergroup.marathon.mesos.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 172.29.1.5"}, nil, false},
		{"case-insensitive", "MyApp-SubGroup-OuterGroup.Marathon.MESOS.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 172.29.1.5"}, nil, false},
		{"canonical", myappCan, mdns.TypeA, mdns.RcodeSuccess, []string{"A 172.29.1.5"}, nil, false},
		{"slave", "myapp-subgroup-outergroup.marathon.slave.mesos.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.1.11"}, nil, false},
		{"dual stack", "db.marathon.mesos.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"AAAA fd00:29::2:8"}, nil, false},
		{"SRV with targets in additional", "_myapp-subgroup-outergroup._tcp.marathon.mesos.", mdns.TypeSRV, mdns.RcodeSuccess,
			[]string{"SRV 0 1 80 " + myappCan}, []string{"A 172.29.1.5"}, false},
		{"named-port SRV", "_http._myapp-subgroup-outergroup._tcp.marathon.mesos.", mdns.TypeSRV, mdns.RcodeSuccess,
			[]string{"SRV 0 1 80 " + myappCan}, []string{"A 172.29.1.5"}, false},
		{"slave SRV", "_nginx._udp.marathon.slave.mesos.", mdns.TypeSRV, mdns.RcodeSuccess,
			[]string{"SRV 0 1 31215 nginx-" + records.TaskHash("nginx.7a1c9e2f-8f3a-11e8-9a0b-70b3d5800001") + "-s2.marathon.slave.mesos."}, []string{"A 10.0.1.12"}, false},
		{"leader", "leader.mesos.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.4.10"}, nil, false},
		{"leader SRV", "_leader._tcp.mesos.", mdns.TypeSRV, mdns.RcodeSuccess, []string{"SRV 0 1 5050 leader.mesos."}, []string{"A 10.0.4.10"}, false},
		// masterN follow the configured masters (here the fake master on
		// loopback), the leader gets the next index: as Mesos-DNS.
		{"master0", "master0.mesos.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 127.0.0.1"}, nil, false},
		{"master1", "master1.mesos.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.4.10"}, nil, false},
		{"slaves", "slave.mesos.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.1.11", "A 10.0.1.12", "A 10.0.1.13"}, nil, false},
		{"framework", "cassandra.prod-1.mesos.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.1.13"}, nil, false},
		{"SOA at the apex", "mesos.", mdns.TypeSOA, mdns.RcodeSuccess, []string{soa}, nil, false},
		{"NS at the apex", "mesos.", mdns.TypeNS, mdns.RcodeSuccess, []string{"NS ns1.mesos."}, []string{"A 127.0.0.1"}, false},
		{"ns1", "ns1.mesos.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 127.0.0.1"}, nil, false},
		{"NXDOMAIN", "nope.marathon.mesos.", mdns.TypeA, mdns.RcodeNameError, nil, nil, true},
		{"NXDOMAIN for SRV", "_nope._tcp.marathon.mesos.", mdns.TypeSRV, mdns.RcodeNameError, nil, nil, true},
		{"NODATA: name without AAAA", "myapp-subgroup-outergroup.marathon.mesos.", mdns.TypeAAAA, mdns.RcodeSuccess, nil, nil, true},
		{"NODATA: unknown type", "leader.mesos.", mdns.TypeTXT, mdns.RcodeSuccess, nil, nil, true},
		{"NODATA: private type", "leader.mesos.", 65280, mdns.RcodeSuccess, nil, nil, true},
		{"NXDOMAIN: private type", "nope.mesos.", 65280, mdns.RcodeNameError, nil, nil, true},
		{"NODATA: empty non-terminal", "marathon.slave.mesos.", mdns.TypeA, mdns.RcodeSuccess, nil, nil, true},
		{"NODATA: _tcp empty non-terminal", "_tcp.marathon.mesos.", mdns.TypeSRV, mdns.RcodeSuccess, nil, nil, true},
		{"NODATA: SOA below the apex", "leader.mesos.", mdns.TypeSOA, mdns.RcodeSuccess, nil, nil, true},
		{"no records for a staging task", "staging.marathon.mesos.", mdns.TypeA, mdns.RcodeNameError, nil, nil, true},
		{"DC/OS containerip", "myapp-subgroup-outergroup.marathon.containerip.dcos.thisdcos.directory.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 172.29.1.5"}, nil, false},
		{"DC/OS agentip", "myapp-subgroup-outergroup.marathon.agentip.dcos.thisdcos.directory.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.1.11"}, nil, false},
		{"DC/OS autoip", "bridged.marathon.autoip.dcos.thisdcos.directory.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.1.11"}, nil, false},
		{"DC/OS NXDOMAIN", "nope.marathon.autoip.dcos.thisdcos.directory.", mdns.TypeA, mdns.RcodeNameError, nil, nil, true},
		{"DC/OS SOA", "dcos.thisdcos.directory.", mdns.TypeSOA, mdns.RcodeSuccess, []string{soa}, nil, false},
		{"PTR of a container IP", "5.1.29.172.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"PTR " + myappCan}, nil, false},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				resp := query(t, ts.dns, network, tc.qname, tc.qtype)
				if resp.Rcode != tc.rcode {
					t.Errorf("rcode %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tc.rcode])
				}
				if !resp.Authoritative {
					t.Errorf("AA not set")
				}
				if diff := cmp.Diff(tc.answer, rrStrings(resp.Answer)); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
				if tc.extra != nil {
					if diff := cmp.Diff(tc.extra, rrStrings(resp.Extra)); diff != "" {
						t.Errorf("additional (-want +got):\n%s", diff)
					}
				}
				gotSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == mdns.TypeSOA
				if gotSOA != tc.authSOA {
					t.Errorf("authority %v, want SOA there: %v", resp.Ns, tc.authSOA)
				}
				if strings.HasSuffix(tc.qname, "dcos.thisdcos.directory.") && len(resp.Answer) > 0 && tc.qtype != mdns.TypeSOA {
					if ttl := resp.Answer[0].Header().Ttl; ttl != 5 {
						t.Errorf("DC/OS TTL %d, want 5", ttl)
					}
				}
			})
		}
	}
}

// Every SRV target resolves.
func TestSRVTargetsResolve(t *testing.T) {
	ts, _ := startMesosServer(t, nil)
	for _, name := range []string{
		"_myapp-subgroup-outergroup._tcp.marathon.mesos.",
		"_db._tcp.marathon.mesos.",
		"_nginx._tcp.marathon.slave.mesos.",
		"_node-0-server._tcp.cassandra.prod-1.slave.mesos.",
		"_leader._udp.mesos.",
		"_slave._tcp.mesos.",
		"_framework._tcp.marathon.mesos.",
	} {
		srv := query(t, ts.dns, "udp", name, mdns.TypeSRV)
		if len(srv.Answer) == 0 {
			t.Errorf("%s: no SRV records", name)
		}
		for _, rr := range srv.Answer {
			target := rr.(*mdns.SRV).Target
			a := query(t, ts.dns, "udp", target, mdns.TypeA)
			if a.Rcode != mdns.RcodeSuccess || len(a.Answer) == 0 {
				t.Errorf("%s: target %s does not resolve: %s", name, target, mdns.RcodeToString[a.Rcode])
			}
		}
	}
}

func TestIPSourcesOrder(t *testing.T) {
	for _, tc := range []struct {
		sources []string
		want    string
	}{
		{[]string{"netinfo", "host"}, "A 172.29.1.5"},
		{[]string{"host", "netinfo"}, "A 10.0.1.11"},
		{[]string{"docker", "host"}, "A 10.0.1.11"},
	} {
		t.Run(strings.Join(tc.sources, ","), func(t *testing.T) {
			ts, _ := startMesosServer(t, func(c *Config) { c.IPSources = tc.sources })
			resp := query(t, ts.dns, "udp", "myapp-subgroup-outergroup.marathon.mesos.", mdns.TypeA)
			if diff := cmp.Diff([]string{tc.want}, rrStrings(resp.Answer)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			// .slave and the DC/OS names do not depend on IPSources.
			resp = query(t, ts.dns, "udp", "myapp-subgroup-outergroup.marathon.containerip.dcos.thisdcos.directory.", mdns.TypeA)
			if diff := cmp.Diff([]string{"A 172.29.1.5"}, rrStrings(resp.Answer)); diff != "" {
				t.Errorf("containerip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBadQueries(t *testing.T) {
	ts, _ := startMesosServer(t, nil)
	for _, tc := range []struct {
		name  string
		msg   func() *mdns.Msg
		rcode int
	}{
		{"CHAOS class", func() *mdns.Msg {
			m := new(mdns.Msg).SetQuestion("leader.mesos.", mdns.TypeTXT)
			m.Question[0].Qclass = mdns.ClassCHAOS
			return m
		}, mdns.RcodeRefused},
		{"zone transfer", func() *mdns.Msg { return new(mdns.Msg).SetQuestion("mesos.", mdns.TypeAXFR) }, mdns.RcodeRefused},
		{"NOTIFY", func() *mdns.Msg { return new(mdns.Msg).SetNotify("mesos.") }, mdns.RcodeNotImplemented},
		{"UPDATE", func() *mdns.Msg { return new(mdns.Msg).SetUpdate("mesos.") }, mdns.RcodeNotImplemented},
		{"EDNS version 1", func() *mdns.Msg {
			m := new(mdns.Msg).SetQuestion("leader.mesos.", mdns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}, mdns.RcodeBadVers},
		{"no forwarding configured", func() *mdns.Msg { return new(mdns.Msg).SetQuestion("example.com.", mdns.TypeA) }, mdns.RcodeRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
			resp, _, err := c.Exchange(tc.msg(), ts.dns)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tc.rcode])
			}
		})
	}
}

// Malformed packets get FORMERR or nothing, and the server keeps serving.
func TestMalformedPackets(t *testing.T) {
	ts, _ := startMesosServer(t, nil)
	longName := strings.Repeat("\x3f"+strings.Repeat("a", 63), 5) + "\x00" // 320 octets > 255
	hdr := func(qd byte) string { return "\x12\x34\x01\x00\x00" + string(qd) + "\x00\x00\x00\x00\x00\x00" }
	for _, tc := range []struct {
		name    string
		pkt     string
		formerr bool
	}{
		{"empty", "", false},
		{"short header", "\x12\x34\x01", false},
		{"header only, one question promised", hdr(1), true},
		{"two questions", hdr(2) + "\x00\x00\x01\x00\x01\x00\x00\x01\x00\x01", true},
		{"label of 64 octets", hdr(1) + "\x40" + strings.Repeat("a", 64) + "\x00\x00\x01\x00\x01", true},
		{"name over 255 octets", hdr(1) + longName + "\x00\x01\x00\x01", true},
		{"compression loop", hdr(1) + "\xc0\x0c\x00\x01\x00\x01", true},
		{"truncated question", hdr(1) + "\x05mesos\x00\x00", true},
		{"a response", "\x12\x34\x81\x80\x00\x00\x00\x00\x00\x00\x00\x00", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				conn, err := net.Dial(network, ts.dns)
				if err != nil {
					t.Fatal(err)
				}
				pkt := []byte(tc.pkt)
				if network == "tcp" {
					pkt = append([]byte{byte(len(pkt) >> 8), byte(len(pkt))}, pkt...)
				}
				if _, err := conn.Write(pkt); err != nil {
					t.Fatal(err)
				}
				// Wait long for an answer that must come, briefly for one
				// that must not.
				wait := 300 * time.Millisecond
				if tc.formerr {
					wait = 10 * time.Second
				}
				_ = conn.SetReadDeadline(time.Now().Add(wait))
				buf := make([]byte, 4096)
				n, err := conn.Read(buf)
				conn.Close()
				if network == "tcp" && n >= 2 {
					buf, n = buf[2:n], n-2
				}
				got := err == nil && n >= 4 && buf[3]&0xf == mdns.RcodeFormatError
				if tc.formerr && !got {
					t.Errorf("%s: got %d bytes (%v), want a FORMERR reply", network, n, err)
				}
				if !tc.formerr && err == nil && n > 0 {
					t.Errorf("%s: got a %d-byte reply, want none", network, n)
				}
			}
		})
	}
	if resp := query(t, ts.dns, "udp", "leader.mesos.", mdns.TypeA); len(resp.Answer) != 1 {
		t.Errorf("server stopped answering after malformed packets: %v", resp)
	}
	if v := metric(t, ts.http, "tabby_dns_malformed_queries_total"); v < 1 {
		t.Errorf("tabby_dns_malformed_queries_total = %v, want > 0", v)
	}
}

func TestHTTPAPI(t *testing.T) {
	ts, _ := startMesosServer(t, nil)
	get := func(path string, v any) int {
		t.Helper()
		resp, err := http.Get(ts.http + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if v != nil {
			if err := json.Unmarshal(body, v); err != nil {
				t.Fatalf("GET %s: %v in %q", path, err, body)
			}
		}
		return resp.StatusCode
	}
	var version map[string]string
	get("/v1/version", &version)
	if version["Version"] != "test" || version["Service"] == "" || version["URL"] == "" {
		t.Errorf("/v1/version = %v", version)
	}
	var cfg map[string]any
	get("/v1/config", &cfg)
	if cfg["Domain"] != "mesos" || cfg["HttpPort"] == nil || cfg["DnsOn"] != true {
		t.Errorf("/v1/config lacks Mesos-DNS fields: %v", cfg)
	}
	type host struct{ Host, IP string }
	for _, name := range []string{"db.marathon.mesos", "db.marathon.mesos.", "DB.Marathon.Mesos."} {
		var hosts []host
		get("/v1/hosts/"+name, &hosts)
		want := []host{{"db.marathon.mesos.", "172.29.1.7"}, {"db.marathon.mesos.", "172.29.2.8"}, {"db.marathon.mesos.", "fd00:29::2:8"}}
		if diff := cmp.Diff(want, hosts); diff != "" {
			t.Errorf("/v1/hosts/%s (-want +got):\n%s", name, diff)
		}
	}
	var none []host
	get("/v1/hosts/nope.mesos", &none)
	if diff := cmp.Diff([]host{{}}, none); diff != "" {
		t.Errorf("/v1/hosts of an unknown name (-want +got):\n%s", diff)
	}
	type service struct{ Service, Host, IP, Port string }
	var svcs []service
	get("/v1/services/_myapp-subgroup-outergroup._tcp.marathon.mesos.", &svcs)
	if diff := cmp.Diff([]service{{"_myapp-subgroup-outergroup._tcp.marathon.mesos.", myappCan, "172.29.1.5", "80"}}, svcs); diff != "" {
		t.Errorf("/v1/services (-want +got):\n%s", diff)
	}
	var enum struct {
		Frameworks []struct {
			Name  string
			Tasks []struct {
				Name, ID string
				Records  []struct{ Name, Host, Rtype string }
			}
		}
	}
	get("/v1/enumerate", &enum)
	if len(enum.Frameworks) != 2 || enum.Frameworks[0].Name != "marathon" || len(enum.Frameworks[0].Tasks) != 5 {
		t.Fatalf("/v1/enumerate = %+v", enum)
	}
	if r := enum.Frameworks[0].Tasks[0].Records[0]; r.Name != "myapp.subgroup.outergroup.marathon.mesos." || r.Rtype != "A" || r.Host != "172.29.1.5" {
		t.Errorf("first enumerated record %+v", r)
	}
	if code := get("/v1/hosts/x/ports", nil); code != http.StatusNotImplemented {
		t.Errorf("/v1/hosts/x/ports: %d, want 501", code)
	}
	query(t, ts.dns, "udp", "leader.mesos.", mdns.TypeA)
	if v := metric(t, ts.http, `tabby_dns_responses_total{result="answer"}`); v < 1 {
		t.Errorf("responses metric %v, want > 0", v)
	}
	if v := metric(t, ts.http, "tabby_dns_ready"); v != 1 {
		t.Errorf("tabby_dns_ready %v, want 1", v)
	}
}
