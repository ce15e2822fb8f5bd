package suite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/bench/internal/report"
	"github.com/tabbynet/tabby/internal/api"
)

// Every benchmark declares what the report needs, with unique IDs and
// metric keys, and Tabby plus at least one baseline.
func TestBenchmarksAreComplete(t *testing.T) {
	ids := map[string]bool{}
	for _, b := range All() {
		for _, x := range append([]string{b.ID}, func() []string {
			var out []string
			for _, a := range b.Also {
				out = append(out, a.ID)
			}
			return out
		}()...) {
			if ids[x] {
				t.Errorf("benchmark ID %q used twice", x)
			}
			ids[x] = true
		}
		t.Run(b.ID, func(t *testing.T) {
			if b.Title == "" || b.What == "" || b.Baseline == "" || b.Method == "" {
				t.Errorf("title, what, baseline and method are all required")
			}
			if b.Run == nil || b.Budget == 0 || b.QuickBudget == 0 {
				t.Errorf("Run, Budget and QuickBudget are required")
			}
			if b.QuickBudget > b.Budget {
				t.Errorf("quick budget %s is over the full one %s", b.QuickBudget, b.Budget)
			}
			checkSystemsAndMetrics(t, b.Systems, b.Metrics)
			for _, a := range b.Also {
				checkSystemsAndMetrics(t, a.Systems, a.Metrics)
			}
		})
	}
}

func checkSystemsAndMetrics(t *testing.T, systems []report.System, metrics []report.Metric) {
	t.Helper()
	tabby, base := false, false
	for _, s := range systems {
		tabby = tabby || s.Key == report.Tabby
		base = base || s.Baseline
	}
	if !tabby || !base {
		t.Errorf("systems %v: want Tabby and at least one baseline", systems)
	}
	keys := map[string]bool{}
	for _, m := range metrics {
		if keys[m.Key] {
			t.Errorf("metric key %q twice", m.Key)
		}
		keys[m.Key] = true
		if m.Label == "" {
			t.Errorf("metric %q has no label", m.Key)
		}
	}
}

// The caps of the quick mode add up to at most 15 minutes (a typical quick
// run takes under 5; each cap only stops a runaway benchmark). 12 until
// the flow-log, DNS-policy and simulation benchmarks joined.
func TestQuickBudgetsAreBounded(t *testing.T) {
	var sum float64
	for _, b := range All() {
		sum += b.QuickBudget.Seconds()
	}
	if sum > 15*60 {
		t.Errorf("quick budgets add up to %.0f s", sum)
	}
}

func TestScalePoliciesAreValid(t *testing.T) {
	ps := scalePolicySet(3, "bench == 'policy'", 5201, 7000)
	if len(ps) != 4 {
		t.Fatalf("got %d policies, want 3 + the allow policy", len(ps))
	}
	for _, p := range ps {
		mustValidate(t, p)
	}
	np := ps[0].(*api.NetworkPolicy)
	if got := len(np.Spec.Ingress); got != rulesPerPolicy {
		t.Errorf("policy has %d rules, want %d", got, rulesPerPolicy)
	}
}

func TestGhostEndpointsAreValid(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range ghostEndpoints(600, 91) {
		w := r.(*api.WorkloadEndpoint)
		b, _ := json.Marshal(w)
		doc := fmt.Sprintf(`{"apiVersion":"tabby.dev/v1","kind":"WorkloadEndpoint",%s`, strings.TrimPrefix(string(b), "{"))
		if _, err := api.Decode([]byte(doc)); err != nil {
			t.Fatalf("endpoint %s does not validate: %v", w.Name, err)
		}
		ip := w.Spec.IPNetworks[0]
		if seen[ip] {
			t.Fatalf("address %s twice", ip)
		}
		seen[ip] = true
	}
}

// The connection-rate helper talks to a loopback echo server.
func TestCRRClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 1)
				if _, err := c.Read(b); err == nil {
					_, _ = c.Write(b)
				}
			}()
		}
	}()
	var out, errb bytes.Buffer
	if code := crrClient([]string{"-addr", ln.Addr().String(), "-t", "500ms", "-c", "2"}, &out, &errb); code != 0 {
		t.Fatalf("crr-client exit %d: %s", code, errb.String())
	}
	var r crrResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	if r.PerSec <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
		t.Errorf("result %+v: want a positive rate and p99 ≥ p50", r)
	}
}

func TestDNSPerfParsing(t *testing.T) {
	out := []byte(`Statistics:

  Queries sent:         1234
  Queries completed:    1230 (99.68%)
  Queries lost:         4 (0.32%)

  Response codes:       NOERROR 1118 (90.89%), NXDOMAIN 112 (9.11%)
  Average packet size:  request 41, response 57
  Run time (s):         10.000000
  Queries per second:   123.456789

  Average Latency (s):  0.001234 (min 0.000016, max 0.034190)
`)
	if m := qpsRe.FindSubmatch(out); m == nil || string(m[1]) != "123.456789" {
		t.Errorf("QPS match = %q", m)
	}
	if m := latRe.FindSubmatch(out); m == nil || string(m[1]) != "0.001234" {
		t.Errorf("latency match = %q", m)
	}
	if m := lostRe.FindSubmatch(out); m == nil || string(m[1]) != "4" {
		t.Errorf("lost match = %q", m)
	}
}

func TestRealisticPoliciesAreValid(t *testing.T) {
	ps, selecting := realisticPolicySet(1000)
	if len(ps) != 1000 || selecting < 5 || selecting > 20 {
		t.Fatalf("%d policies, %d selecting the server: want 1,000 and 5-20", len(ps), selecting)
	}
	clientAllows := 0
	for _, p := range ps {
		mustValidate(t, p)
		for _, r := range p.(*api.NetworkPolicy).Spec.Ingress {
			if r.Source.Selector == "role == 'client'" {
				clientAllows++
			}
		}
	}
	if clientAllows != 1 {
		t.Errorf("%d rules allow the client, want 1", clientAllows)
	}
}

// mustValidate checks a NetworkPolicy the way the datastore would take it.
func mustValidate(t *testing.T, p api.Resource) {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`{"apiVersion":"tabby.dev/v1","kind":"NetworkPolicy",%s`, strings.TrimPrefix(string(b), "{"))
	if _, err := api.Decode([]byte(doc)); err != nil {
		t.Errorf("policy %s does not validate: %v", p.GetObjectMeta().Name, err)
	}
}
