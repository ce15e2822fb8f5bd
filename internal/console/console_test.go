package console

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing/router"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
	"github.com/tabbynet/tabby/internal/flows"
	"github.com/tabbynet/tabby/internal/lab"
)

// fakeAgent serves an agent's /status/bgp and, from a recorded file,
// /flows on loopback; it keeps the flow queries it was asked.
type fakeAgent struct {
	srv     *httptest.Server
	status  router.Status
	flows   []byte
	mu      sync.Mutex
	queries []string
}

func newFakeAgent(t *testing.T, st router.Status, flowsFile string) *fakeAgent {
	t.Helper()
	a := &fakeAgent{status: st}
	if flowsFile != "" {
		b, err := os.ReadFile(flowsFile)
		if err != nil {
			t.Fatal(err)
		}
		a.flows = b
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+router.StatusPath, func(w http.ResponseWriter, r *http.Request) { _ = json.NewEncoder(w).Encode(a.status) })
	mux.HandleFunc("GET "+flows.Path, func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.queries = append(a.queries, r.URL.RawQuery)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = w.Write(a.flows)
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) port(t *testing.T) int {
	_, p, _ := net.SplitHostPort(a.srv.Listener.Addr().String())
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// seed writes a small cluster: one node on 127.0.0.1, three endpoints, a
// policy that selects one of them and a pool.
func seed(t *testing.T, s datastore.Store) {
	t.Helper()
	c := datastore.NewClient(s)
	ctx := context.Background()
	order := 100.0
	for _, r := range []api.Resource{
		&api.Node{TypeMeta: tm("Node"), ObjectMeta: api.ObjectMeta{Name: "h1"},
			Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: "127.0.0.1/8"}}},
		&api.IPPool{TypeMeta: tm("IPPool"), ObjectMeta: api.ObjectMeta{Name: "default-ipv4"}, Spec: api.IPPoolSpec{CIDR: "10.244.0.0/16"}},
		wep("web", "h1", "10.244.1.2/32", map[string]string{"app": "web"}),
		wep("api", "h1", "10.244.1.4/32", map[string]string{"app": "api"}),
		wep("db", "h1", "10.244.2.3/32", map[string]string{"app": "db"}),
		&api.NetworkPolicy{TypeMeta: tm("NetworkPolicy"), ObjectMeta: api.ObjectMeta{Name: "db-only-api", Namespace: "default"},
			Spec: api.NetworkPolicySpec{Order: &order, Selector: "app == 'db'", Types: []string{"Ingress"},
				Ingress: []api.Rule{{Action: "Deny", Source: api.EntityRule{Selector: "app == 'web'"}}, {Action: "Allow"}}}},
		&api.StagedNetworkPolicy{TypeMeta: tm("StagedNetworkPolicy"), ObjectMeta: api.ObjectMeta{Name: "staged-deny", Namespace: "default"},
			Spec: api.StagedNetworkPolicySpec{NetworkPolicySpec: api.NetworkPolicySpec{Selector: "app == 'api'", Types: []string{"Ingress"},
				Ingress: []api.Rule{{Action: "Deny"}}}}},
		&api.HostEndpoint{TypeMeta: tm("HostEndpoint"), ObjectMeta: api.ObjectMeta{Name: "h1-eth0", Labels: map[string]string{"role": "host"}},
			Spec: api.HostEndpointSpec{Node: "h1", InterfaceName: "eth0", ExpectedIPs: []string{"10.1.0.11"}}},
		&api.GlobalNetworkPolicy{TypeMeta: tm("GlobalNetworkPolicy"), ObjectMeta: api.ObjectMeta{Name: "hosts"},
			Spec: api.GlobalNetworkPolicySpec{Selector: "role == 'host'", Types: []string{"Ingress"}, Ingress: []api.Rule{{Action: "Allow"}}}},
		&api.GlobalNetworkPolicy{TypeMeta: tm("GlobalNetworkPolicy"), ObjectMeta: api.ObjectMeta{Name: "all-hosts-too"},
			Spec: api.GlobalNetworkPolicySpec{Selector: "role == 'host' || app == 'db'", Types: []string{"Ingress"}, Ingress: []api.Rule{{Action: "Allow"}}}},
		&api.GlobalNetworkPolicy{TypeMeta: tm("GlobalNetworkPolicy"), ObjectMeta: api.ObjectMeta{Name: "not-default"},
			Spec: api.GlobalNetworkPolicySpec{Selector: "app != 'db'", NamespaceSelector: "kubernetes.io/metadata.name == 'other'", Types: []string{"Egress"}, Egress: []api.Rule{{Action: "Allow"}}}},
	} {
		if _, err := c.Create(ctx, r); err != nil {
			t.Fatalf("create %s %s: %v", r.KindInfo().Kind, r.GetObjectMeta().Name, err)
		}
	}
}

func tm(kind string) api.TypeMeta { return api.TypeMeta{APIVersion: api.APIVersion, Kind: kind} }

func wep(name, node, addr string, labels map[string]string) *api.WorkloadEndpoint {
	return &api.WorkloadEndpoint{TypeMeta: tm("WorkloadEndpoint"),
		ObjectMeta: api.ObjectMeta{Name: api.WorkloadEndpointName(node, "lab", name, "eth0"), Namespace: "default", Labels: labels},
		Spec: api.WorkloadEndpointSpec{Orchestrator: "lab", Workload: name, Node: node, Endpoint: "eth0", InterfaceName: "tab" + name,
			IPNetworks: []string{addr}}}
}

func newTestConsole(t *testing.T, flowsFile string) (*httptest.Server, *fakeAgent) {
	t.Helper()
	store := memstore.New()
	seed(t, store)
	agent := newFakeAgent(t, router.Status{Node: "h1", BGP: &router.BGPStatus{RouterID: "127.0.0.1", ASN: 64512},
		Peers: []router.PeerStatus{{Address: "10.1.0.12", Node: "h2", Type: "node-to-node mesh", State: "up", Info: "Established"}}}, flowsFile)
	srv, err := New(Config{Store: store, AgentPort: agent.port(t)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, agent
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestPages loads every page over HTTP against a datastore and a fake
// agent, and checks what each shows.
func TestPages(t *testing.T) {
	ts, agent := newTestConsole(t, "testdata/flows.ndjson")
	for _, tc := range []struct {
		name, path string
		code       int
		want, not  []string
	}{
		{name: "overview", path: "/overview", code: 200, want: []string{"1 (1 agents answering)", "1 of 1 up", "3 workload, 1 host", "<span>default: 4</span>", "1 staged", "default-ipv4 10.244.0.0/16: 0 of 65536 in use (0%)"}},
		{name: "root", path: "/", code: 200, want: []string{"<h1>Overview</h1>"}},
		{name: "nodes", path: "/nodes", code: 200, want: []string{"h1", "127.0.0.1/8", "10.1.0.12", `data-state="up"`, "node-to-node mesh", "64512"}},
		{name: "endpoints", path: "/endpoints", code: 200, want: []string{"10.244.1.2/32", "10.244.2.3/32", "app=db", "projectcalico.org/namespace=default", "default: default/db-only-api"}},
		{name: "policies", path: "/policies", code: 200,
			want: []string{`id="tier-kube-admin"`, `id="tier-default"`, `data-policy="default/db-only-api"`, `<span class="ep">default/h1-lab-db-eth0</span>`, "default action Deny"},
			not:  []string{`<span class="ep">default/h1-lab-web-eth0</span>`}},
		{name: "policy", path: "/policy?kind=NetworkPolicy&namespace=default&name=db-only-api", code: 200,
			want: []string{"NetworkPolicy default/db-only-api", `data-name="h1-lab-db-eth0"`, "selector <code>app == &#39;web&#39;</code>"}},
		{name: "endpoints by selector", path: "/endpoints?selector=" + url.QueryEscape("app in {'web', 'api'}"), code: 200,
			want: []string{"10.244.1.2/32", "10.244.1.4/32", "2 of 4"}, not: []string{"10.244.2.3/32", "10.1.0.11"}},
		{name: "endpoints by node and namespace", path: "/endpoints?node=h1&namespace=default", code: 200, want: []string{"3 of 4"}, not: []string{"10.1.0.11"}},
		{name: "endpoints bad selector", path: "/endpoints?selector=app+%3D%3D", code: 400, want: []string{`selector: &#34;app ==&#34;:`}},
		{name: "host endpoints", path: "/endpoints", code: 200, want: []string{`data-kind="HostEndpoint"`, "10.1.0.11", "role=host", "interface eth0", "default: hosts"}},
		{name: "global policies", path: "/policies", code: 200,
			want: []string{`<tr class="policy" data-policy="hosts" data-kind="GlobalNetworkPolicy">`, `<span class="ep">host:h1-eth0</span>`},
			not:  []string{`<span class="ep">host:h1-eth0</span> <span class="ep">default/h1-lab-api-eth0</span>`}}, {name: "global policy selects hosts and workloads", path: "/policy?kind=GlobalNetworkPolicy&name=all-hosts-too", code: 200,
			want: []string{"host endpoint h1-eth0", "default/h1-lab-db-eth0"}, not: []string{"default/h1-lab-web-eth0"}},
		{name: "selector on hosts", path: "/policy?kind=GlobalNetworkPolicy&name=hosts", code: 200,
			want: []string{"host endpoint h1-eth0"}, not: []string{"default/h1-lab-db-eth0"}},
		{name: "namespace selector: no hosts", path: "/policy?kind=GlobalNetworkPolicy&name=not-default", code: 200,
			not: []string{"host endpoint h1-eth0", "default/h1-lab-api-eth0"}},
		{name: "staged policies", path: "/policies", code: 200,
			want: []string{`<tr class="policy staged" data-policy="default/staged-deny" data-kind="StagedNetworkPolicy">`, `<span class="ep">default/h1-lab-api-eth0</span>`, "staged: never enforced"}},
		{name: "staged policy", path: "/policy?kind=StagedNetworkPolicy&namespace=default&name=staged-deny", code: 200,
			want: []string{"StagedNetworkPolicy default/staged-deny", "Staged: evaluated and never enforced", `data-name="h1-lab-api-eth0"`}},
		{name: "staged on endpoints", path: "/endpoints", code: 200, want: []string{"default: default/staged-deny</a> (staged)"}},
		{name: "policy missing", path: "/policy?kind=NetworkPolicy&namespace=default&name=nope", code: 404, want: []string{"does not exist"}},
		{name: "policy bad kind", path: "/policy?kind=Pod&name=x", code: 400, want: []string{`kind: &#34;Pod&#34; is not`}},
		{name: "ipam", path: "/ipam", code: 200, want: []string{"default-ipv4", "10.244.0.0/16", "0 of 65536 addresses in use"}},
		{name: "flows", path: "/flows?since=" + time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC).Format(time.RFC3339), code: 200,
			want: []string{`data-action="deny"`, "default/web", "10.244.1.2:40000", `href="/policy?kind=NetworkPolicy&amp;name=db-only-api&amp;namespace=default"`,
				"default: NetworkPolicy default/db-only-api rule 0", "deny: <a", ">default: StagedNetworkPolicy default/staged-deny (end of tier)</a>", "app /shop/db"}},
		{name: "flows deny only", path: "/flows?action=deny&since=2026-12-07T22:00:00Z", code: 200, want: []string{`data-action="deny"`}, not: []string{`data-action="allow"`}},
		{name: "flows from to", path: "/flows?src=default/web&dst=default/db&since=2026-12-07T22:00:00Z", code: 200,
			want: []string{`data-action="deny"`}, not: []string{`data-action="allow"`}},
		{name: "flows from address", path: "/flows?src=10.244.1.4&since=2026-12-07T22:00:00Z", code: 200,
			want: []string{"10.244.1.4:40001"}, not: []string{"10.244.1.2:"}},
		{name: "flows bad action", path: "/flows?action=drop", code: 400, want: []string{"action: &#34;drop&#34; is not allow or deny"}},
		{name: "flow rows", path: "/flows/rows?endpoint=api&since=2026-12-07T22:00:00Z", code: 200, want: []string{"default/api"}, not: []string{"<html"}},
		{name: "matrix not a lab", path: "/matrix", code: 200, want: []string{"does not run on a lab"}},
		{name: "static", path: "/static/flows.js", code: 200, want: []string{"/flows/rows?"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, ts.URL+tc.path)
			if code != tc.code {
				t.Errorf("GET %s: %d, want %d\n%s", tc.path, code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s: no %q in\n%s", tc.path, w, body)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(body, w) {
					t.Errorf("GET %s: %q should not be in\n%s", tc.path, w, body)
				}
			}
		})
	}
	agent.mu.Lock()
	defer agent.mu.Unlock()
	found := false
	for _, q := range agent.queries {
		if strings.Contains(q, "action=deny") && strings.Contains(q, "since=2026-12-07T22%3A00%3A00Z") {
			found = true
		}
	}
	if !found {
		t.Errorf("the agent was asked %q; want one query with action=deny and since", agent.queries)
	}
}

// TestAgentDown: a node whose agent does not answer is shown with the
// error, the other pages still render.
func TestAgentDown(t *testing.T) {
	store := memstore.New()
	seed(t, store)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close() // nothing listens there now
	port, _ := strconv.Atoi(p)
	srv, err := New(Config{Store: store, AgentPort: port})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	if code, body := get(t, ts.URL+"/nodes"); code != 200 || !strings.Contains(body, "BGP sessions unknown: node h1:") {
		t.Errorf("GET /nodes: %d\n%s", code, body)
	}
	if code, body := get(t, ts.URL+"/flows"); code != 200 || !strings.Contains(body, "flows: node h1:") {
		t.Errorf("GET /flows: %d\n%s", code, body)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no store", cfg: Config{}, want: "console: no datastore"},
		{name: "bad port", cfg: Config{Store: memstore.New(), AgentPort: 70000}, want: "console: agent port 70000: want 1-65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Errorf("New: %v, want %s", err, tc.want)
			}
		})
	}
}

func TestFlowPolicyLink(t *testing.T) {
	for _, tc := range []struct {
		name string
		ref  *flows.PolicyRef
		link string
		text string
	}{
		{name: "none", ref: nil},
		{name: "network policy", ref: &flows.PolicyRef{Tier: "default", Kind: "NetworkPolicy", Namespace: "ns1", Name: "p", Rule: 2},
			link: "/policy?kind=NetworkPolicy&name=p&namespace=ns1", text: "default: NetworkPolicy ns1/p rule 2"},
		{name: "kubernetes", ref: &flows.PolicyRef{Tier: "default", Kind: "KubernetesNetworkPolicy", Namespace: "ns1", Name: "k", Rule: 0},
			link: "/policy?kind=NetworkPolicy&name=knp.default.k&namespace=ns1", text: "default: KubernetesNetworkPolicy ns1/k rule 0"},
		{name: "staged kubernetes", ref: &flows.PolicyRef{Tier: "default", Kind: "StagedKubernetesNetworkPolicy", Namespace: "ns1", Name: "k", Rule: -1},
			link: "/policy?kind=StagedKubernetesNetworkPolicy&name=k&namespace=ns1", text: "default: StagedKubernetesNetworkPolicy ns1/k (end of tier)"},
		{name: "global", ref: &flows.PolicyRef{Tier: "security", Kind: "GlobalNetworkPolicy", Name: "g", Rule: 0},
			link: "/policy?kind=GlobalNetworkPolicy&name=g", text: "security: GlobalNetworkPolicy g rule 0"},
		{name: "profile", ref: &flows.PolicyRef{Kind: "Profile", Name: "tabby", Rule: 0}, link: "/policy?kind=Profile&name=tabby", text: "Profile tabby rule 0"},
		{name: "default", ref: &flows.PolicyRef{Kind: "default", Name: "no-endpoint", Rule: -1}, text: "default (no-endpoint)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := flowPolicyLink(tc.ref); got != tc.link {
				t.Errorf("link: %q, want %q", got, tc.link)
			}
			if got := policyText(tc.ref); got != tc.text {
				t.Errorf("text: %q, want %q", got, tc.text)
			}
		})
	}
}

// TestMatrixPage renders a probe's result (a fake prober): the cells, and
// links to the flows of each pair found by the addresses probed.
func TestMatrixPage(t *testing.T) {
	store := memstore.New()
	seed(t, store)
	probes := 0
	srv, err := New(Config{Store: store, Matrix: func(ctx context.Context, spec lab.ProbeSpec) (*lab.Reachability, error) {
		probes++
		if spec.Protocol != "udp" || spec.Port != 53 || spec.Family != 4 {
			t.Errorf("probe spec %+v, want udp/53 over IPv4", spec)
		}
		return &lab.Reachability{Protocol: spec.Protocol, Port: spec.Port, Family: 4, From: []string{"db", "web"}, To: []string{"db", "web"},
			Results: []lab.PairResult{
				{From: "web", To: "db", Address: "10.244.2.3:53", Detail: "timeout"},
				{From: "db", To: "web", Address: "10.244.1.2:53", Allowed: true, Detail: "reply"},
			}}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	code, body := get(t, ts.URL+"/matrix?proto=udp&port=53")
	for _, w := range []string{
		"udp/53: each row",
		`<tr data-from="web"><th>web</th><td class="cell deny" title="web → db: denied (timeout)"><a href="/flows?action=deny&amp;dst=default%2Fh1-lab-db-eth0&amp;since=15m&amp;src=default%2Fh1-lab-web-eth0">X</a></td><td class="cell self" title="">-</td></tr>`,
		`<td class="cell allow" title="db → web: allowed (reply)"><a href="/flows?dst=default%2Fh1-lab-web-eth0&amp;since=15m&amp;src=default%2Fh1-lab-db-eth0">.</a>`,
	} {
		if code != 200 || !strings.Contains(body, w) {
			t.Errorf("GET /matrix: %d, no %q in\n%s", code, w, body)
		}
	}
	if code, body := get(t, ts.URL+"/matrix?port=x"); code != 400 || !strings.Contains(body, `port: &#34;x&#34; is not a number`) {
		t.Errorf("GET /matrix?port=x: %d\n%s", code, body)
	}
	if code, body := get(t, ts.URL+"/matrix?family=5"); code != 400 || !strings.Contains(body, `family: &#34;5&#34; is not 4 or 6`) {
		t.Errorf("GET /matrix?family=5: %d\n%s", code, body)
	}
	if probes != 1 {
		t.Errorf("%d probes, want 1 (none for bad input)", probes)
	}
}

// downStore is a datastore that does not answer.
type downStore struct{ datastore.Store }

func (downStore) List(context.Context, string) ([]*datastore.KV, int64, error) {
	return nil, 0, datastore.ErrUnavailable
}

// TestDatastoreDown: every page says the datastore could not be read, with
// 503, and renders nothing stale.
func TestDatastoreDown(t *testing.T) {
	srv, err := New(Config{Store: downStore{memstore.New()}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	for _, path := range []string{"/overview", "/nodes", "/endpoints", "/policies", "/policy?name=x", "/ipam", "/flows"} {
		code, body := get(t, ts.URL+path)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "datastore unavailable") {
			t.Errorf("GET %s: %d, want 503 and the error\n%s", path, code, body)
		}
	}
}
