package labpolicy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/flows"
	"github.com/tabbynet/tabby/internal/lab"
)

// flowWorld is a 2-host lab for the flow log tests: web on h1, cli and db
// on h2, each listening on TCP 80 and 81; db admits web on 80 and denies
// 81 explicitly (rule 1), everything else to db ends its tier (rule -1).
func flowWorld(t *testing.T) *world {
	w := upWorld(t, lab.Config{Name: uniqueName("fl"), Nodes: 2, AgentArgs: []string{"--flow-window", "1s"}})
	w.run(
		lab.RunSpec{Name: "web", Node: "h1", Namespace: "shop", Labels: []lab.KeyValue{{Key: "app", Value: "web"}}},
		lab.RunSpec{Name: "cli", Node: "h2", Namespace: "shop"},
		lab.RunSpec{Name: "db", Node: "h2", Namespace: "shop", Labels: []lab.KeyValue{{Key: "app", Value: "db"}}},
	)
	for _, c := range []string{"web", "cli", "db"} {
		for _, port := range []uint16{80, 81} {
			ln, err := lab.ListenProbe(w.cs[c].NetNS, lab.ProbeTCP, netip.AddrPortFrom(w.ip(c), port))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}
	}
	w.apply(`
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  order: 10
  selector: app == 'db'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [80]}}
  - {action: Deny, protocol: TCP, destination: {ports: [81]}}`)
	return w
}

// connect makes one TCP connection attempt and reports whether it got through.
func (w *world) connect(from, to string, port uint16) bool {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o := lab.ProbeOnce(ctx, lab.ProbeTarget{NS: w.cs[from].NetNS, Protocol: lab.ProbeTCP, Dst: netip.AddrPortFrom(w.ip(to), port), Timeout: time.Second})
	if o.Err != nil {
		w.t.Fatalf("probe %s → %s:%d: %v", from, to, port, o.Err)
	}
	return o.Allowed
}

// expectConnect waits until from → to:port passes (want) or is dropped.
func (w *world) expectConnect(from, to string, port uint16, want bool) {
	w.t.Helper()
	deadline := time.Now().Add(expectWithin)
	for w.connect(from, to, port) != want {
		if time.Now().After(deadline) {
			w.t.Fatalf("%s → %s:%d: allowed is %v, want %v", from, to, port, !want, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// flowsOf runs `tabby lab flows NAME -o json ARGS…`.
func (w *world) flowsOf(args ...string) []flows.FlowRecord {
	w.t.Helper()
	out, err := w.tabby("", append([]string{"lab", "flows", w.lab.Name(), "-o", "json"}, args...)...)
	if err != nil {
		w.t.Fatal(err)
	}
	var recs []flows.FlowRecord
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r flows.FlowRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			w.t.Fatalf("bad record %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// flowWant describes the record a test waits for.
type flowWant struct {
	node, src, dst, direction, action string
	dstPort                           uint16
	policy                            flows.PolicyRef
	pendingAction                     string
	pendingPolicy                     *flows.PolicyRef
}

func (f flowWant) String() string {
	return fmt.Sprintf("%s %s: %s → %s:%d %s by %s (pending %s %v)", f.node, f.direction, f.src, f.dst, f.dstPort, f.action, f.policy, f.pendingAction, f.pendingPolicy)
}

func name(e *flows.Endpoint) string {
	if e == nil {
		return ""
	}
	return e.Name
}

func (f flowWant) match(r flows.FlowRecord) bool {
	if r.Node != f.node || name(r.Src) != f.src || name(r.Dst) != f.dst || r.DstPort != f.dstPort ||
		r.Direction != f.direction || r.Action != f.action || r.Proto != "tcp" {
		return false
	}
	if f.policy.Kind != "" && r.Policy != f.policy {
		return false
	}
	if r.PendingAction != f.pendingAction {
		return false
	}
	return f.pendingPolicy == nil || r.PendingPolicy != nil && *r.PendingPolicy == *f.pendingPolicy
}

// expectFlows waits until `tabby lab flows` (with args) shows every want.
func (w *world) expectFlows(args []string, wants ...flowWant) []flows.FlowRecord {
	w.t.Helper()
	deadline := time.Now().Add(expectWithin)
	for {
		recs := w.flowsOf(args...)
		var missing []flowWant
		for _, f := range wants {
			found := false
			for _, r := range recs {
				if f.match(r) {
					found = true
					break
				}
			}
			if !found {
				missing = append(missing, f)
			}
		}
		if len(missing) == 0 {
			return recs
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, r := range recs {
				j, _ := json.Marshal(r)
				b.Write(j)
				b.WriteByte('\n')
			}
			w.t.Fatalf("flows lack %v; they are:\n%s", missing, b.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestPrivilegedFlows: real connections show up in `tabby lab flows` on
// the nodes of both ends, with their endpoints and the policy and rule
// that decided: an allowed flow by a policy rule and by the profile, a
// denied one by an explicit Deny rule (its index) and by the end of the
// tier (-1); the filters select them.
func TestPrivilegedFlows(t *testing.T) {
	requirePrivileged(t)
	w := flowWorld(t)
	w.expectConnect("web", "db", 80, true)
	w.expectConnect("cli", "db", 81, false)
	w.expectConnect("cli", "db", 80, false)
	w.expectConnect("cli", "web", 80, true)

	dbPolicy := func(rule int) flows.PolicyRef {
		return flows.PolicyRef{Tier: "default", Kind: "NetworkPolicy", Namespace: "shop", Name: "db", Rule: rule}
	}
	recs := w.expectFlows(nil,
		flowWant{node: "h2", src: "web", dst: "db", dstPort: 80, direction: flows.Ingress, action: flows.Allow, policy: dbPolicy(0)},
		flowWant{node: "h1", src: "web", dst: "db", dstPort: 80, direction: flows.Egress, action: flows.Allow},
		flowWant{node: "h2", src: "cli", dst: "db", dstPort: 81, direction: flows.Ingress, action: flows.Deny, policy: dbPolicy(1)},
		flowWant{node: "h2", src: "cli", dst: "db", dstPort: 80, direction: flows.Ingress, action: flows.Deny, policy: dbPolicy(-1)},
		flowWant{node: "h2", src: "cli", dst: "db", dstPort: 81, direction: flows.Egress, action: flows.Allow},
		flowWant{node: "h1", src: "cli", dst: "web", dstPort: 80, direction: flows.Ingress, action: flows.Allow},
	)
	for _, r := range recs {
		if r.Node == "h1" && name(r.Dst) == "web" && r.Direction == flows.Ingress && r.Policy.Kind != flows.PolicyKindProfile {
			t.Errorf("cli → web should be allowed by web's profile; got %s", r.Policy)
		}
		if r.Src != nil && r.Src.Labels["app"] == "" && name(r.Src) == "web" {
			t.Errorf("web's record lacks its labels: %+v", r.Src)
		}
	}

	// Filters.
	for _, r := range w.flowsOf("--action", "deny") {
		if r.Action != flows.Deny {
			t.Errorf("--action deny shows %s", r.Action)
		}
	}
	for _, r := range w.flowsOf("--endpoint", "web") {
		if name(r.Src) != "web" && name(r.Dst) != "web" {
			t.Errorf("--endpoint web shows %s → %s", name(r.Src), name(r.Dst))
		}
	}
	if got := w.flowsOf("--policy", "shop/db", "--action", "deny"); len(got) < 2 {
		t.Errorf("--policy default/db --action deny: %d records, want the 2 denies at least", len(got))
	}
	if got := w.flowsOf("--since", time.Now().Add(time.Minute).UTC().Format(time.RFC3339)); len(got) != 0 {
		t.Errorf("--since in the future shows %d records", len(got))
	}
	if _, err := w.tabby("", "lab", "flows", w.lab.Name(), "--action", "maybe"); err == nil || !strings.Contains(err.Error(), `"maybe"`) {
		t.Errorf("--action maybe: got %v, want an error naming the value", err)
	}
	out, err := w.tabby("", "lab", "flows", w.lab.Name(), "-o", "wide", "--action", "deny")
	if err != nil || !strings.Contains(out, "NetworkPolicy|shop/db|1") || !strings.Contains(out, "PENDING") {
		t.Errorf("-o wide: %v\n%s", err, out)
	}

	// A Marathon app's flows name its app and task.
	w.run(lab.RunSpec{Name: "api", Node: "h1", MesosApp: "/shop/api"})
	w.expectConnect("api", "web", 80, true)
	deadline := time.Now().Add(expectWithin)
	for found := false; !found; {
		for _, r := range w.flowsOf("--endpoint", "/shop/api") {
			if r.Src != nil && r.Src.App == "/shop/api" && name(r.Dst) == "web" {
				found = true
				if r.Src.Name == "" || strings.Contains(r.Src.Name, "-cni-") {
					t.Errorf("the Mesos task is named %q, want its task name", r.Src.Name)
				}
			}
		}
		if !found && time.Now().After(deadline) {
			var b strings.Builder
			for _, r := range w.flowsOf("--since", "2m") {
				if r.DstPort == 80 && r.Node == "h1" {
					j, _ := json.Marshal(r)
					b.Write(j)
					b.WriteByte('\n')
				}
			}
			t.Fatalf("no flow of the Marathon app /shop/api to web; sources of flows to web:\n%s", b.String())
		}
		time.Sleep(300 * time.Millisecond)
	}

	// --follow streams a flow made after it started.
	w.followFlow()

	// Metrics: h2 counted the flows and the denies by policy.
	metrics := w.agentMetrics("h2")
	for _, want := range []string{
		`tabby_flows_total{action="deny",direction="ingress"}`,
		`calico_denied_packets{policy="default|shop/db|1",srcIP="` + w.ip("cli").String() + `"}`,
		`tabby_policy_packets_total{action="allow",direction="ingress",kind="NetworkPolicy",policy="shop/db",tier="default"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("h2's metrics lack %s", want)
		}
	}
}

// agentMetrics reads a host agent's /metrics.
func (w *world) agentMetrics(host string) string {
	w.t.Helper()
	c := lab.HTTPClientIn(lab.NodeNamespace(w.lab.Name(), lab.MasterNode))
	resp, err := c.Get("http://" + netip.AddrPortFrom(w.node(host).IP.Addr(), lab.AgentHTTPPort).String() + "/metrics")
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}

// TestPrivilegedStagedPolicy: a staged deny lets traffic pass while the
// flows show it would be denied, by the staged policy; promoted (applied
// as the kind it stages), it denies, and the flows say so.
func TestPrivilegedStagedPolicy(t *testing.T) {
	requirePrivileged(t)
	w := flowWorld(t)
	w.expectConnect("cli", "web", 80, true)
	spec := `
  order: 5
  selector: app == 'web'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [81]}}
  - {action: Deny, protocol: TCP, source: {selector: "!has(app)"}}`
	w.apply(`
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: web-lockdown, namespace: shop}
spec:` + spec)
	since := time.Now().UTC().Format(time.RFC3339Nano)
	// The agents take the staged policy; traffic keeps passing.
	staged := &flows.PolicyRef{Tier: "default", Kind: "StagedNetworkPolicy", Namespace: "shop", Name: "web-lockdown", Rule: 1}
	deadline := time.Now().Add(expectWithin)
	for {
		if !w.connect("cli", "web", 80) {
			t.Fatal("cli → web was denied by a staged policy: staged policies must not be enforced")
		}
		recs := w.flowsOf("--since", since, "--endpoint", "web", "--policy", "web-lockdown")
		ok := false
		for _, r := range recs {
			if (flowWant{node: "h1", src: "cli", dst: "web", dstPort: 80, direction: flows.Ingress, action: flows.Allow,
				pendingAction: flows.Deny, pendingPolicy: staged}).match(r) {
				ok = true
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no flow shows the staged deny; flows since %s: %+v", since, recs)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Port 81 is allowed by the staged rule 0: pending allow, shown since
	// a staged policy decided it.
	w.connect("cli", "web", 81)
	w.expectFlows([]string{"--since", since}, flowWant{node: "h1", src: "cli", dst: "web", dstPort: 81, direction: flows.Ingress,
		action: flows.Allow, pendingAction: flows.Allow,
		pendingPolicy: &flows.PolicyRef{Tier: "default", Kind: "StagedNetworkPolicy", Namespace: "shop", Name: "web-lockdown", Rule: 0}})

	// Promote it.
	w.apply(`
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-lockdown, namespace: shop}
spec:` + spec)
	w.expectConnect("cli", "web", 80, false)
	w.expectFlows([]string{"--action", "deny"}, flowWant{node: "h1", src: "cli", dst: "web", dstPort: 80, direction: flows.Ingress, action: flows.Deny,
		policy:        flows.PolicyRef{Tier: "default", Kind: "NetworkPolicy", Namespace: "shop", Name: "web-lockdown", Rule: 1},
		pendingAction: flows.Deny})
}

// followFlow starts `tabby lab flows NAME --follow -o json`, makes a new
// connection web → db:80 and waits for its record on the stream.
func (w *world) followFlow() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), expectWithin)
	defer cancel()
	since := time.Now().UTC().Format(time.RFC3339Nano)
	cmd := exec.CommandContext(ctx, filepath.Join(testBinaries(w.t), "tabby"), "lab", "flows", w.lab.Name(), "--follow", "-o", "json",
		"--since", since, "--endpoint", "db", "--action", "allow")
	out, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	got := make(chan flows.FlowRecord, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r flows.FlowRecord
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				got <- r
			}
		}
		close(got)
	}()
	time.Sleep(500 * time.Millisecond) // the command connects to the agents
	w.expectConnect("web", "db", 80, true)
	for {
		select {
		case r, ok := <-got:
			if !ok {
				w.t.Fatal("tabby lab flows --follow ended before the flow came")
			}
			if r.Start.Before(time.Now().Add(-expectWithin)) {
				w.t.Errorf("--since %s: got a record of %s", since, r.Start)
			}
			if name(r.Src) == "web" && name(r.Dst) == "db" && r.DstPort == 80 {
				return
			}
		case <-ctx.Done():
			w.t.Fatal("tabby lab flows --follow did not stream the new flow")
		}
	}
}
