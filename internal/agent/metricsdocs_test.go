package agent

import (
	"encoding/json"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tabbynet/tabby/internal/agent/endpoint/endpointtest"
	"github.com/tabbynet/tabby/internal/agent/flowlog"
	"github.com/tabbynet/tabby/internal/agent/routing/router"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// registered lists the metric names an agent with flow logs and routing
// registers (what `tabby agent` mounts).
func registered(t *testing.T) map[string]bool {
	t.Helper()
	a, err := New(Config{Node: "n1", NodeIP: netip.MustParsePrefix("10.1.0.5/24"), MTU: 1500}, memstore.New(), endpointtest.NewFake(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := flowlog.New(flowlog.Config{Node: "n1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(router.Config{Node: "n1", DisableBGP: true}, memstore.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RegisterMetrics(append(fl.Collectors(), r.Collectors()...)...); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 256)
	go func() { a.m.reg.Describe(ch); close(ch) }()
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\b((?:tabby|calico)_[a-z0-9_]+)`)

// known reports whether a queried series belongs to a registered metric
// (a histogram's _bucket, _sum and _count series do).
func known(names map[string]bool, n string) bool {
	if names[n] {
		return true
	}
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(n, s); ok && names[b] {
			return true
		}
	}
	return false
}

// TestMetricsDocs: the Grafana dashboard of docs/grafana loads as a
// dashboard and queries only metrics the agent registers; docs/metrics.md
// names only registered metrics and writes up every flow metric.
func TestMetricsDocs(t *testing.T) {
	names := registered(t)
	b, err := os.ReadFile("../../docs/grafana/tabby-flows.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("docs/grafana/tabby-flows.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("docs/grafana/tabby-flows.json: not a dashboard (title %q, uid %q, %d panels)", dash.Title, dash.UID, len(dash.Panels))
	}
	queried := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			ms := metricName.FindAllString(tg.Expr, -1)
			if len(ms) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, tg.Expr)
			}
			for _, m := range ms {
				queried[m] = true
				if !known(names, m) {
					t.Errorf("panel %q queries %s, which the agent does not register", p.Title, m)
				}
			}
		}
	}
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range metricName.FindAllString(string(doc), -1) {
		if strings.HasPrefix(m, "tabby_dns_") {
			continue // the DNS server's, documented in dns.md
		}
		documented[m] = true
		if !known(names, m) {
			t.Errorf("docs/metrics.md names %s, which the agent does not register", m)
		}
	}
	fl, _ := flowlog.New(flowlog.Config{Node: "n1"}, nil)
	for _, c := range fl.Collectors() {
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			m := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())[1]
			if !documented[m] {
				t.Errorf("flow metric %s is not written up in docs/metrics.md", m)
			}
		}
	}
	var all []string
	for n := range names {
		if !documented[n] && (strings.HasPrefix(n, "tabby_") || strings.HasPrefix(n, "calico_")) {
			all = append(all, n)
		}
	}
	slices.Sort(all)
	for _, n := range all {
		t.Errorf("agent metric %s is not in docs/metrics.md", n)
	}
	t.Logf("dashboard queries %d metrics; docs/metrics.md names %d", len(queried), len(documented))
}
