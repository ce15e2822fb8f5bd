package dns

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

// TestSRVTargetsDualStack: the SRV target of a dual-stack task resolves in
// both families: the SRV answer carries the target's A and AAAA records in
// the additional section, and A and AAAA queries of the target answer them,
// over real UDP and TCP; the Mesos-DNS HTTP API lists both addresses of the
// target under the service.
func TestSRVTargetsDualStack(t *testing.T) {
	ts, _ := startMesosServer(t, nil)
	const service = "_db._tcp.marathon.mesos."
	v4, v6 := "172.29.2.8", "fd00:29::2:8" // the dual-stack db task (fixture)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			srv := query(t, ts.dns, network, service, mdns.TypeSRV)
			if srv.Rcode != mdns.RcodeSuccess || len(srv.Answer) == 0 {
				t.Fatalf("SRV %s: rcode %s, answer %v", service, mdns.RcodeToString[srv.Rcode], srv.Answer)
			}
			// Find the dual-stack task's target through its AAAA record.
			target := ""
			for _, rr := range srv.Extra {
				if a, ok := rr.(*mdns.AAAA); ok && a.AAAA.String() == v6 {
					target = a.Hdr.Name
				}
			}
			if target == "" {
				t.Fatalf("SRV %s: no AAAA %s in the additional section %v", service, v6, rrStrings(srv.Extra))
			}
			if !slices.ContainsFunc(srv.Answer, func(rr mdns.RR) bool { return rr.(*mdns.SRV).Target == target }) {
				t.Errorf("SRV %s: the AAAA in the additional section is for %s, which no SRV record targets", service, target)
			}
			var extra []string
			for _, rr := range srv.Extra {
				if rr.Header().Name == target {
					extra = append(extra, rrStrings([]mdns.RR{rr})...)
				}
			}
			if diff := cmp.Diff([]string{"A " + v4, "AAAA " + v6}, extra); diff != "" {
				t.Errorf("additional records of target %s (-want +got):\n%s", target, diff)
			}
			for _, q := range []struct {
				qtype uint16
				want  string
			}{{mdns.TypeA, "A " + v4}, {mdns.TypeAAAA, "AAAA " + v6}} {
				resp := query(t, ts.dns, network, target, q.qtype)
				if diff := cmp.Diff([]string{q.want}, rrStrings(resp.Answer)); resp.Rcode != mdns.RcodeSuccess || diff != "" {
					t.Errorf("%s %s: rcode %s (-want +got):\n%s", mdns.TypeToString[q.qtype], target, mdns.RcodeToString[resp.Rcode], diff)
				}
			}
		})
	}

	resp, err := http.Get(ts.http + "/v1/services/" + service)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var svcs []struct{ Service, Host, IP, Port string }
	if err := json.Unmarshal(body, &svcs); err != nil {
		t.Fatalf("GET /v1/services/%s: %v in %q", service, err, body)
	}
	hostOf := map[string]string{}
	for _, s := range svcs {
		hostOf[s.IP] = s.Host
	}
	if hostOf[v4] == "" || hostOf[v4] != hostOf[v6] {
		t.Errorf("GET /v1/services/%s: got %s, want %s and %s listed for the same target", service, body, v4, v6)
	}
}
