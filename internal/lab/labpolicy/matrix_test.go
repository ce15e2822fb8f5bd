package labpolicy

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/lab"
)

// Probing: how long one probe waits (a denied pair costs this), how long
// a test waits for the dataplane to show what it expects, and how long
// after a change it starts looking (the agents program a change within
// tens of milliseconds; see docs/design/policy.md "Measured in the lab";
// a table that matched a half-applied change would otherwise pass).
const (
	probeTimeout = time.Second
	expectWithin = 30 * time.Second
	settle       = 300 * time.Millisecond
)

// probeKinds are the probes a check can name.
var allProbes = []string{"tcp/80", "tcp/81", "udp/80", "udp/81"}

// shortProbes replace "all" with -short: one TCP and one UDP port, the
// other port each, so both protocols and both ports are still seen.
var shortProbes = []string{"tcp/80", "udp/81"}

// probeSpec reads "tcp/80", "udp/81" or "icmp".
func probeSpec(s string) (lab.ProbeSpec, error) {
	if s == lab.ProbeICMP {
		return lab.ProbeSpec{Protocol: lab.ProbeICMP}, nil
	}
	proto, port, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(port)
	if !ok || err != nil || (proto != lab.ProbeTCP && proto != lab.ProbeUDP) {
		return lab.ProbeSpec{}, fmt.Errorf("probe %q: want tcp/PORT, udp/PORT or icmp", s)
	}
	return lab.ProbeSpec{Protocol: proto, Port: n}, nil
}

// check is one expectation of a case: the probes it applies to ("all",
// or a list such as "tcp/80 udp/80", or "icmp") and the truth table.
type check struct {
	probes string
	want   string
}

// expandChecks turns a case's checks into a table per probe.
func expandChecks(t testing.TB, names []string, group int, checks []check) map[string]*truthTable {
	t.Helper()
	out := map[string]*truthTable{}
	for _, c := range checks {
		probes := strings.Fields(c.probes)
		if c.probes == "all" {
			probes = allProbes
			if testing.Short() {
				probes = shortProbes
			}
		}
		tt := mustTable(t, names, group, c.want)
		for _, p := range probes {
			if _, err := probeSpec(p); err != nil {
				t.Fatal(err)
			}
			if _, dup := out[p]; dup {
				t.Fatalf("probe %s is checked twice", p)
			}
			out[p] = tt
		}
	}
	return out
}

// observe probes every pair of names with each probe (all at once) and
// returns what it saw, and the raw results.
func (w *world) observe(ctx context.Context, names []string, group int, probes []string) (map[string]*truthTable, map[string]*lab.Reachability, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	tables := map[string]*truthTable{}
	raw := map[string]*lab.Reachability{}
	for _, p := range probes {
		spec, err := probeSpec(p)
		if err != nil {
			return nil, nil, err
		}
		spec.From, spec.To = names, names
		spec.Timeout, spec.Concurrency = probeTimeout, 128
		spec.Family = w.family
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := w.lab.Probe(ctx, spec)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			tables[p], raw[p] = observedTable(names, group, r), r
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, nil, errs[0]
	}
	return tables, raw, nil
}

// expect probes until every probe's matrix is the expected one, or
// expectWithin passes; then it reports each matrix that differs as the
// Kubernetes e2e tests do (expected, observed, comparison) and returns
// false.
func (w *world) expect(t testing.TB, names []string, group int, want map[string]*truthTable) bool {
	t.Helper()
	probes := make([]string, 0, len(want))
	for p := range want {
		probes = append(probes, p)
	}
	sort.Strings(probes)
	ctx, cancel := context.WithTimeout(context.Background(), expectWithin+10*time.Second)
	defer cancel()
	deadline := time.Now().Add(expectWithin)
	rounds := 0
	for {
		rounds++
		got, raw, err := w.observe(ctx, names, group, probes)
		if err != nil {
			t.Errorf("probe: %v", err)
			return false
		}
		ok := true
		for _, p := range probes {
			ok = ok && got[p].equal(want[p])
		}
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			for _, p := range probes {
				if got[p].equal(want[p]) {
					continue
				}
				table, diffs := compare(want[p], got[p])
				var details []string
				for _, from := range names {
					for _, to := range names {
						if want[p].cells[[2]string{from, to}] == got[p].cells[[2]string{from, to}] {
							continue
						}
						if r, ok := raw[p].Get(from, to); ok {
							details = append(details, fmt.Sprintf("%s->%s %s: %s%s", from, to, r.Address, r.Detail, r.Error))
						}
					}
				}
				t.Errorf("%s after %d rounds (rows: from, columns: to; . allowed, X denied):\nexpected:\n%sobserved:\n%scomparison (X: differs):\n%s%d cells differ: %s\n%s",
					p, rounds, want[p], got[p], table, len(diffs), strings.Join(diffs, ", "), strings.Join(details, "\n"))
			}
			return false
		}
	}
}

// The matrix: namespaces x, y and z of containers a, b and c (label
// pod=a|b|c), spread so that every namespace and every pod label is on
// every host and most pairs cross hosts. x and y are attached as a CNI
// runtime attaches a Kubernetes pod (namespace in CNI_ARGS), z as Mesos
// attaches Marathon apps /z/a, /z/b, /z/c (namespace as the
// projectcalico.org/namespace network label).
var matrixNames = []string{"xa", "xb", "xc", "ya", "yb", "yc", "za", "zb", "zc"}

func matrixContainers() []lab.RunSpec {
	var out []lab.RunSpec
	for i, ns := range []string{"x", "y", "z"} {
		for j, pod := range []string{"a", "b", "c"} {
			s := lab.RunSpec{
				Name:      ns + pod,
				Node:      lab.HostName((i+j)%3 + 1),
				Namespace: ns,
				Labels:    []lab.KeyValue{{Key: "pod", Value: pod}},
			}
			if ns == "z" {
				s.MesosApp = "/z/" + pod
			}
			out = append(out, s)
		}
	}
	return out
}

// Tables used by several cases. Rows are sources, columns destinations,
// in the order xa xb xc  ya yb yc  za zb zc.
const (
	tAll = `
xa -.. ... ...
xb .-. ... ...
xc ..- ... ...
ya ... -.. ...
yb ... .-. ...
yc ... ..- ...
za ... ... -..
zb ... ... .-.
zc ... ... ..-`
	// Nothing reaches x.
	tXClosed = `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya XXX -.. ...
yb XXX .-. ...
yc XXX ..- ...
za XXX ... -..
zb XXX ... .-.
zc XXX ... ..-`
	tXFromX = `
xa -.. ... ...
xb .-. ... ...
xc ..- ... ...
ya XXX -.. ...
yb XXX .-. ...
yc XXX ..- ...
za XXX ... -..
zb XXX ... .-.
zc XXX ... ..-`
	tXFromY = `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya ... -.. ...
yb ... .-. ...
yc ... ..- ...
za XXX ... -..
zb XXX ... .-.
zc XXX ... ..-`
	tXFromZ = `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya XXX -.. ...
yb XXX .-. ...
yc XXX ..- ...
za ... ... -..
zb ... ... .-.
zc ... ... ..-`
	// x reachable from everyone but the b pods.
	tXNotFromB = `
xa -.. ... ...
xb X-X ... ...
xc ..- ... ...
ya ... -.. ...
yb XXX .-. ...
yc ... ..- ...
za ... ... -..
zb XXX ... .-.
zc ... ... ..-`
	// x reachable from everyone but the c pods.
	tXNotFromC = `
xa -.. ... ...
xb .-. ... ...
xc XX- ... ...
ya ... -.. ...
yb ... .-. ...
yc XXX ..- ...
za ... ... -..
zb ... ... .-.
zc XXX ... ..-`
	tXFromYbZc = `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya XXX -.. ...
yb ... .-. ...
yc XXX ..- ...
za XXX ... -..
zb XXX ... .-.
zc ... ... ..-`
	tYClosed = `
xa -.. XXX ...
xb .-. XXX ...
xc ..- XXX ...
ya ... -XX ...
yb ... X-X ...
yc ... XX- ...
za ... XXX -..
zb ... XXX .-.
zc ... XXX ..-`
	tZClosed = `
xa -.. ... XXX
xb .-. ... XXX
xc ..- ... XXX
ya ... -.. XXX
yb ... .-. XXX
yc ... ..- XXX
za ... ... -XX
zb ... ... X-X
zc ... ... XX-`
)

// The named ports of the named-port cases: "web" is a different port
// (and protocol) on each endpoint.
var webPorts = map[string]string{"xa": "TCP/80", "xb": "TCP/81", "xc": "UDP/80", "ya": "TCP/81"}

type matrixCase struct {
	name string
	// namedPorts are set on the endpoints (name → "PROTO/PORT" of a port
	// named "web") for the case.
	namedPorts map[string]string
	manifest   string
	// manifest6 replaces manifest in the IPv6 run, for cases whose rules
	// are about one family (ICMP types, ipVersion): the same expectation
	// with the IPv6 counterpart (ICMPv6 types, the other ipVersion).
	manifest6 string
	checks    []check
}

var matrixCases = []matrixCase{
	{
		name: "NetworkPolicy types Ingress without rules denies all ingress",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: x}
spec: {selector: all(), types: [Ingress]}`,
		checks: []check{{"all", tXClosed}, {"icmp", tXClosed}},
	},
	{
		name: "NetworkPolicy types Egress without rules denies all egress",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: x}
spec: {selector: all(), types: [Egress]}`,
		checks: []check{{"all", `
xa -XX XXX XXX
xb X-X XXX XXX
xc XX- XXX XXX
ya ... -.. ...
yb ... .-. ...
yc ... ..- ...
za ... ... -..
zb ... ... .-.
zc ... ... ..-`}},
	},
	{
		name: "a rule selector of a NetworkPolicy matches its own namespace only",
		manifest: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: same-namespace, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, source: {selector: all()}}]`,
		checks: []check{{"all", tXFromX}},
	},
	{
		name: "selector picks the endpoint; types default to Ingress; the rest stays with the profile",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: a-from-b, namespace: "y"}
spec:
  selector: pod == 'a'
  ingress: [{action: Allow, source: {selector: pod == 'b'}}]`,
		checks: []check{{"all", `
xa -.. X.. ...
xb .-. X.. ...
xc ..- X.. ...
ya ... -.. ...
yb ... .-. ...
yc ... X.- ...
za ... X.. -..
zb ... X.. .-.
zc ... X.. ..-`}},
	},
	{
		name: "a policy with only egress rules is an Egress policy; ingress stays with the profile",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: a-to-b, namespace: x}
spec:
  selector: pod == 'a'
  egress: [{action: Allow, destination: {selector: pod == 'b'}}]`,
		checks: []check{{"all", `
xa -.X XXX XXX
xb .-. ... ...
xc ..- ... ...
ya ... -.. ...
yb ... .-. ...
yc ... ..- ...
za ... ... -..
zb ... ... .-.
zc ... ... ..-`}},
	},
	{
		name: "a policy with ingress and egress rules is both (Mesos endpoints)",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: both, namespace: z}
spec:
  selector: pod == 'a'
  ingress: [{action: Allow, source: {selector: pod == 'b'}}]
  egress: [{action: Allow, destination: {selector: pod == 'c'}}]`,
		checks: []check{{"all", `
xa -.. ... X..
xb .-. ... X..
xc ..- ... X..
ya ... -.. X..
yb ... .-. X..
yc ... ..- X..
za XXX XXX -X.
zb ... ... .-.
zc ... ... X.-`}},
	},
	{
		name: "explicit types Ingress and Egress with only ingress rules denies all egress",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: both-types, namespace: x}
spec:
  selector: pod == 'a'
  types: [Ingress, Egress]
  ingress: [{action: Allow, source: {selector: all()}}]`,
		checks: []check{{"all", `
xa -XX XXX XXX
xb .-. ... ...
xc ..- ... ...
ya X.. -.. ...
yb X.. .-. ...
yc X.. ..- ...
za X.. ... -..
zb X.. ... .-.
zc X.. ... ..-`}},
	},
	{
		name: "namespaceSelector",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: from-y, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, source: {namespaceSelector: projectcalico.org/name == 'y'}}]`,
		checks: []check{{"all", tXFromY}},
	},
	{
		name: "selector with namespaceSelector",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: a-from-others, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, source: {selector: pod == 'a', namespaceSelector: "projectcalico.org/name in {'y', 'z'}"}}]`,
		checks: []check{{"all", `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya ... -.. ...
yb XXX .-. ...
yc XXX ..- ...
za ... ... -..
zb XXX ... .-.
zc XXX ... ..-`}},
	},
	{
		name: "notSelector of a GlobalNetworkPolicy matches in every namespace",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: not-c}
spec:
  selector: projectcalico.org/namespace == 'x'
  ingress: [{action: Allow, source: {notSelector: pod == 'c'}}]`,
		checks: []check{{"all", tXNotFromC}},
	},
	{
		name: "a notSelector-only rule of a NetworkPolicy stays in its namespace",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: not-c, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, source: {notSelector: pod == 'c'}}]`,
		checks: []check{{"all", `
xa -.. ... ...
xb .-. ... ...
xc XX- ... ...
ya XXX -.. ...
yb XXX .-. ...
yc XXX ..- ...
za XXX ... -..
zb XXX ... .-.
zc XXX ... ..-`}},
	},
	{
		name: "notSelector with namespaceSelector all()",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: not-c-anywhere, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, source: {namespaceSelector: all(), notSelector: pod == 'c'}}]`,
		checks: []check{{"all", tXNotFromC}},
	},
	{
		name: "selector expressions: in, &&, ||, !=",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: expressions}
spec:
  selector: "pod in {'a', 'b'} && projectcalico.org/namespace != 'z'"
  ingress: [{action: Allow, source: {selector: "pod == 'c' || projectcalico.org/namespace == 'z'"}}]`,
		checks: []check{{"all", `
xa -X. XX. ...
xb X-. XX. ...
xc ..- ... ...
ya XX. -X. ...
yb XX. X-. ...
yc ... ..- ...
za ... ... -..
zb ... ... .-.
zc ... ... ..-`}},
	},
	{
		name: "protocol by name",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: tcp-only, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, protocol: TCP}]`,
		checks: []check{{"tcp/80 tcp/81", tAll}, {"udp/80 udp/81 icmp", tXClosed}},
	},
	{
		name: "protocol by number",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: udp-only, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, protocol: 17}]`,
		checks: []check{{"udp/80 udp/81", tAll}, {"tcp/80 tcp/81 icmp", tXClosed}},
	},
	{
		name: "notProtocol by name",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: not-udp}
spec:
  selector: projectcalico.org/namespace == 'y'
  ingress: [{action: Allow, notProtocol: UDP}]`,
		checks: []check{{"tcp/80 tcp/81 icmp", tAll}, {"udp/80 udp/81", tYClosed}},
	},
	{
		name: "notProtocol by number",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: not-tcp, namespace: z}
spec:
  selector: all()
  ingress: [{action: Allow, notProtocol: 6}]`,
		checks: []check{{"udp/80 udp/81 icmp", tAll}, {"tcp/80 tcp/81", tZClosed}},
	},
	{
		name: "icmp type and code, notICMP",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: ping, namespace: x}
spec:
  selector: all()
  ingress:
  - action: Allow
    protocol: ICMP
    icmp: {type: 8, code: 0}
    source: {namespaceSelector: projectcalico.org/name == 'y'}
  - action: Allow
    protocol: ICMP
    notICMP: {type: 8}
    source: {namespaceSelector: projectcalico.org/name == 'z'}`,
		manifest6: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: ping, namespace: x}
spec:
  selector: all()
  ingress:
  - action: Allow
    protocol: ICMPv6
    icmp: {type: 128, code: 0}
    source: {namespaceSelector: projectcalico.org/name == 'y'}
  - action: Allow
    protocol: ICMPv6
    notICMP: {type: 128}
    source: {namespaceSelector: projectcalico.org/name == 'z'}`,
		checks: []check{{"icmp", tXFromY}, {"all", tXClosed}},
	},
	{
		name: "deny echo requests by icmp type",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: no-ping-from-a}
spec:
  selector: projectcalico.org/namespace == 'z'
  ingress:
  - {action: Deny, protocol: ICMP, icmp: {type: 8}, source: {selector: pod == 'a'}}
  - {action: Allow}`,
		manifest6: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: no-ping-from-a}
spec:
  selector: projectcalico.org/namespace == 'z'
  ingress:
  - {action: Deny, protocol: ICMPv6, icmp: {type: 128}, source: {selector: pod == 'a'}}
  - {action: Allow}`,
		checks: []check{{"all", tAll}, {"icmp", `
xa -.. ... XXX
xb .-. ... ...
xc ..- ... ...
ya ... -.. XXX
yb ... .-. ...
yc ... ..- ...
za ... ... -XX
zb ... ... .-.
zc ... ... ..-`}},
	},
	{
		name: "ipVersion",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: ip-version, namespace: x}
spec:
  selector: all()
  ingress:
  - {action: Allow, ipVersion: 6}
  - {action: Allow, ipVersion: 4, source: {namespaceSelector: projectcalico.org/name == 'z'}}`,
		manifest6: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: ip-version, namespace: x}
spec:
  selector: all()
  ingress:
  - {action: Allow, ipVersion: 4}
  - {action: Allow, ipVersion: 6, source: {namespaceSelector: projectcalico.org/name == 'z'}}`,
		checks: []check{{"all", tXFromZ}},
	},
	{
		name: "source nets (CIDR and bare address)",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: nets, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, source: {nets: ["{{ip "ya"}}/32", "{{ip "zb"}}"]}}]`,
		checks: []check{{"all", `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya ... -.. ...
yb XXX .-. ...
yc XXX ..- ...
za XXX ... -..
zb ... ... .-.
zc XXX ... ..-`}},
	},
	{
		name: "source notNets",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: not-nets, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, source: {notNets: ["{{ip "ya"}}/32", "{{ip "xb"}}/32"]}}]`,
		checks: []check{{"all", `
xa -.. ... ...
xb X-X ... ...
xc ..- ... ...
ya XXX -.. ...
yb ... .-. ...
yc ... ..- ...
za ... ... -..
zb ... ... .-.
zc ... ... ..-`}},
	},
	{
		name: "source nets with notNets",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: nets-not-nets, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, source: {nets: ["{{pool}}"], notNets: ["{{ip "yb"}}/32", "{{ip "zc"}}/32"]}}]`,
		checks: []check{{"all", `
xa -.. ... ...
xb .-. ... ...
xc ..- ... ...
ya ... -.. ...
yb XXX .-. ...
yc ... ..- ...
za ... ... -..
zb ... ... .-.
zc XXX ... ..-`}},
	},
	{
		name: "destination nets in egress",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: a-to-nets, namespace: "y"}
spec:
  selector: pod == 'a'
  egress: [{action: Allow, destination: {nets: ["{{ip "xc"}}/32", "{{ip "zc"}}/32"]}}]`,
		checks: []check{{"all", `
xa -.. ... ...
xb .-. ... ...
xc ..- ... ...
ya XX. -XX XX.
yb ... .-. ...
yc ... ..- ...
za ... ... -..
zb ... ... .-.
zc ... ... ..-`}},
	},
	{
		name: "destination notNets in global egress",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: z-not-to-xa}
spec:
  selector: projectcalico.org/namespace == 'z'
  egress: [{action: Allow, destination: {notNets: ["{{ip "xa"}}/32"]}}]`,
		checks: []check{{"all", `
xa -.. ... ...
xb .-. ... ...
xc ..- ... ...
ya ... -.. ...
yb ... .-. ...
yc ... ..- ...
za X.. ... -..
zb X.. ... .-.
zc X.. ... ..-`}},
	},
	{
		name: "destination port number",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: port-80, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]`,
		checks: []check{{"tcp/80", tAll}, {"tcp/81 udp/80 udp/81", tXClosed}},
	},
	{
		name: "destination port ranges and lists",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: port-ranges, namespace: x}
spec:
  selector: all()
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: ["70:79", 81]}}
  - {action: Allow, protocol: UDP, destination: {ports: ["80:80"]}}`,
		checks: []check{{"tcp/81 udp/80", tAll}, {"tcp/80 udp/81", tXClosed}},
	},
	{
		name: "destination notPorts (number and range)",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: not-ports, namespace: x}
spec:
  selector: all()
  ingress:
  - {action: Allow, protocol: TCP, destination: {notPorts: [80]}}
  - {action: Allow, protocol: UDP, destination: {notPorts: ["1:80"]}}`,
		checks: []check{{"tcp/81 udp/81", tAll}, {"tcp/80 udp/80", tXClosed}},
	},
	{
		name: "source ports and notPorts",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: source-ports, namespace: x}
spec:
  selector: all()
  ingress:
  - {action: Allow, protocol: TCP, source: {namespaceSelector: projectcalico.org/name == 'y', ports: ["1:1023"]}}
  - {action: Allow, protocol: TCP, source: {namespaceSelector: projectcalico.org/name == 'z', notPorts: ["1:1023"]}}`,
		checks: []check{{"tcp/80 tcp/81", tXFromZ}},
	},
	{
		name:       "named ports resolve per endpoint",
		namedPorts: webPorts,
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: named-ports, namespace: x}
spec:
  selector: all()
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [web]}}
  - {action: Allow, protocol: UDP, destination: {ports: [web]}}`,
		checks: []check{
			{"tcp/80", `
xa -XX ... ...
xb .-X ... ...
xc .X- ... ...
ya .XX -.. ...
yb .XX .-. ...
yc .XX ..- ...
za .XX ... -..
zb .XX ... .-.
zc .XX ... ..-`},
			{"tcp/81", `
xa -.X ... ...
xb X-X ... ...
xc X.- ... ...
ya X.X -.. ...
yb X.X .-. ...
yc X.X ..- ...
za X.X ... -..
zb X.X ... .-.
zc X.X ... ..-`},
			{"udp/80", `
xa -X. ... ...
xb X-. ... ...
xc XX- ... ...
ya XX. -.. ...
yb XX. .-. ...
yc XX. ..- ...
za XX. ... -..
zb XX. ... .-.
zc XX. ... ..-`},
			{"udp/81", tXClosed},
		},
	},
	{
		name:       "named notPorts resolve per endpoint",
		namedPorts: webPorts,
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: named-not-ports, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, protocol: TCP, destination: {notPorts: [web]}}]`,
		checks: []check{
			{"tcp/80", `
xa -.. ... ...
xb X-. ... ...
xc X.- ... ...
ya X.. -.. ...
yb X.. .-. ...
yc X.. ..- ...
za X.. ... -..
zb X.. ... .-.
zc X.. ... ..-`},
			{"tcp/81", `
xa -X. ... ...
xb .-. ... ...
xc .X- ... ...
ya .X. -.. ...
yb .X. .-. ...
yc .X. ..- ...
za .X. ... -..
zb .X. ... .-.
zc .X. ... ..-`},
			{"udp/80 udp/81", tXClosed},
		},
	},
	{
		name: "rules in order: Deny before Allow",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: deny-b-then-allow, namespace: x}
spec:
  selector: all()
  ingress:
  - {action: Deny, source: {selector: pod == 'b', namespaceSelector: all()}}
  - {action: Allow}`,
		checks: []check{{"all", tXNotFromB}},
	},
	{
		name: "policies in order: the lower order first, whatever the names",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: a-allow}
spec: {order: 20, selector: projectcalico.org/namespace == 'x', ingress: [{action: Allow}]}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: z-deny-b}
spec: {order: 10, selector: projectcalico.org/namespace == 'x', ingress: [{action: Deny, source: {selector: pod == 'b'}}]}`,
		checks: []check{{"all", tXNotFromB}},
	},
	{
		name: "a policy without order comes last; end of policies denies",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: a-deny-b}
spec: {selector: projectcalico.org/namespace == 'x', ingress: [{action: Deny, source: {selector: pod == 'b'}}]}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: z-allow-y}
spec: {order: 1000, selector: projectcalico.org/namespace == 'x', ingress: [{action: Allow, source: {selector: projectcalico.org/namespace == 'y'}}]}`,
		checks: []check{{"all", tXFromY}},
	},
	{
		name: "equal order: ties by name (deny first)",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: a-deny-b}
spec: {order: 10, selector: projectcalico.org/namespace == 'x', ingress: [{action: Deny, source: {selector: pod == 'b'}}]}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: b-allow-y}
spec: {order: 10, selector: projectcalico.org/namespace == 'x', ingress: [{action: Allow, source: {selector: projectcalico.org/namespace == 'y'}}]}`,
		checks: []check{{"all", `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya ... -.. ...
yb XXX .-. ...
yc ... ..- ...
za XXX ... -..
zb XXX ... .-.
zc XXX ... ..-`}},
	},
	{
		name: "equal order: ties by name (allow first)",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: a-allow-y}
spec: {order: 10, selector: projectcalico.org/namespace == 'x', ingress: [{action: Allow, source: {selector: projectcalico.org/namespace == 'y'}}]}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: b-deny-b}
spec: {order: 10, selector: projectcalico.org/namespace == 'x', ingress: [{action: Deny, source: {selector: pod == 'b'}}]}`,
		checks: []check{{"all", tXFromY}},
	},
	{
		name: "equal order between NetworkPolicies: ties by name",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: m-allow-z, namespace: x}
spec: {order: 5, selector: all(), ingress: [{action: Allow, source: {namespaceSelector: projectcalico.org/name == 'z'}}]}
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: k-deny-zc, namespace: x}
spec: {order: 5, selector: all(), ingress: [{action: Deny, source: {selector: pod == 'c', namespaceSelector: projectcalico.org/name == 'z'}}]}`,
		checks: []check{{"all", `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya XXX -.. ...
yb XXX .-. ...
yc XXX ..- ...
za ... ... -..
zb ... ... .-.
zc XXX ... ..-`}},
	},
	{
		name: "Pass skips the remaining policies and the profile decides",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: pass-y}
spec: {order: 1, selector: projectcalico.org/namespace == 'x', ingress: [{action: Pass, source: {selector: projectcalico.org/namespace == 'y'}}]}
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {order: 2, selector: all(), ingress: [{action: Deny}]}`,
		checks: []check{{"all", tXFromY}},
	},
	{
		name: "Log does not end the evaluation",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: log-then-a}
spec:
  selector: projectcalico.org/namespace == 'x'
  ingress: [{action: Log}, {action: Allow, source: {selector: pod == 'a'}}]`,
		checks: []check{{"all", `
xa -.. ... ...
xb X-X ... ...
xc XX- ... ...
ya ... -.. ...
yb XXX .-. ...
yc XXX ..- ...
za ... ... -..
zb XXX ... .-.
zc XXX ... ..-`}},
	},
	{
		name: "GlobalNetworkPolicy namespaceSelector picks the namespaces it applies to",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: z-from-a}
spec:
  namespaceSelector: projectcalico.org/name == 'z'
  selector: all()
  ingress: [{action: Allow, source: {selector: pod == 'a'}}]`,
		checks: []check{{"all", `
xa -.. ... ...
xb .-. ... XXX
xc ..- ... XXX
ya ... -.. ...
yb ... .-. XXX
yc ... ..- XXX
za ... ... -..
zb ... ... X-X
zc ... ... XX-`}},
	},
	{
		name: "GlobalNetworkSet selected by a GlobalNetworkPolicy",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkSet
metadata: {name: trusted, labels: {trust: "yes"}}
spec: {nets: ["{{ip "yb"}}/32", "{{ip "zc"}}/32"]}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: from-trusted}
spec:
  selector: projectcalico.org/namespace == 'x'
  ingress: [{action: Allow, source: {selector: trust == 'yes'}}]`,
		checks: []check{{"all", tXFromYbZc}},
	},
	{
		name: "GlobalNetworkSet selected by a NetworkPolicy with namespaceSelector global()",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkSet
metadata: {name: trusted, labels: {trust: "yes"}}
spec: {nets: ["{{ip "yb"}}/32", "{{ip "zc"}}/32"]}
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: from-trusted, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, source: {selector: trust == 'yes', namespaceSelector: global()}}]`,
		checks: []check{{"all", tXFromYbZc}},
	},
	{
		name: "NetworkSet selected by a NetworkPolicy of its own namespace only",
		manifest: `
apiVersion: tabby.dev/v1
kind: NetworkSet
metadata: {name: partners, namespace: x, labels: {partner: "true"}}
spec: {nets: ["{{ip "za"}}/32"]}
---
apiVersion: tabby.dev/v1
kind: NetworkSet
metadata: {name: partners, namespace: "y", labels: {partner: "true"}}
spec: {nets: ["{{ip "ya"}}/32"]}
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: from-partners, namespace: x}
spec:
  selector: all()
  ingress: [{action: Allow, source: {selector: partner == 'true'}}]`,
		checks: []check{{"all", `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya XXX -.. ...
yb XXX .-. ...
yc XXX ..- ...
za ... ... -..
zb XXX ... .-.
zc XXX ... ..-`}},
	},
	// Tiers, as Calico v3.29+ manifests write them (applied unchanged).
	// Each case is built so that a dataplane ignoring tiers (one ordered
	// list, Pass to the profiles) would show another matrix.
	{
		name: "Tier: a tier's end-of-tier Deny stops a lower-order policy of the default tier",
		manifest: `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.x-from-x}
spec:
  tier: security
  order: 10
  selector: projectcalico.org/namespace == 'x'
  ingress: [{action: Allow, source: {selector: projectcalico.org/namespace == 'x'}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-all, namespace: x}
spec: {order: 1, selector: all(), ingress: [{action: Allow}]}`,
		checks: []check{{"all", tXFromX}},
	},
	{
		name: "Tier: defaultAction Pass hands what the tier did not decide to the next tier (here the profile)",
		manifest: `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 50, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.deny-b}
spec:
  tier: platform
  selector: projectcalico.org/namespace == 'x'
  ingress: [{action: Deny, source: {selector: pod == 'b'}}]`,
		checks: []check{{"all", tXNotFromB}},
	},
	{
		name: "Tier: a Pass rule skips the rest of its tier and the next tier decides",
		manifest: `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Deny}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.x-ingress}
spec:
  tier: security
  order: 1
  selector: projectcalico.org/namespace == 'x'
  ingress:
  - {action: Pass, source: {selector: projectcalico.org/namespace == 'y'}}
  - {action: Allow, source: {selector: projectcalico.org/namespace == 'z'}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-y, namespace: x}
spec: {selector: all(), ingress: [{action: Deny, source: {selector: projectcalico.org/namespace == 'y'}}]}`,
		checks: []check{{"all", tXFromZ}},
	},
}

// TestPrivilegedPolicyMatrix is the conformance suite: one lab (three
// hosts, no encapsulation; the full run repeats it over VXLAN and IPIP),
// the nine containers, and every case applied, checked with real traffic
// on every probe and removed in turn (the default profile's all-allowed
// matrix must come back between cases).
func TestPrivilegedPolicyMatrix(t *testing.T) {
	requirePrivileged(t)
	encaps := []string{"none"}
	if !testing.Short() {
		encaps = append(encaps, "vxlan")
		if kernelHasIPIP(t) {
			encaps = append(encaps, "ipip")
		} else {
			t.Log("this kernel has no ipip module: the suite does not run over IPIP")
		}
	}
	for _, encap := range encaps {
		t.Run("encap="+encap, func(t *testing.T) {
			w := upWorld(t, lab.Config{Name: uniqueName("pm"), Nodes: 3, Encap: encap})
			w.run(matrixContainers()...)
			runMatrixCases(t, w, matrixCases)
		})
	}
}

// TestPrivilegedPolicyMatrixIPv6 is the conformance suite over IPv6: a
// dual-stack lab (three hosts, IPv6 routed over BGP; the full run repeats
// it with IPv6 in VXLAN), every case with the containers' IPv6 addresses in
// its nets and every probe sent to IPv6 addresses; the cases about one
// family use their IPv6 counterpart (ICMPv6 types, ipVersion 6), so every
// expectation is the IPv4 one.
func TestPrivilegedPolicyMatrixIPv6(t *testing.T) {
	requirePrivileged(t)
	encaps := []string{"none"}
	if !testing.Short() {
		encaps = append(encaps, "vxlan")
	}
	for _, encap := range encaps {
		t.Run("encap="+encap, func(t *testing.T) {
			w := upWorld(t, lab.Config{Name: uniqueName("p6"), Nodes: 3, IPFamily: lab.Dual, Encap: encap})
			w.family = 6
			w.run(matrixContainers()...)
			runMatrixCases(t, w, matrixCases)
		})
	}
}

// kernelHasIPIP reports whether an ipip device can be made (in a
// namespace of its own, removed at once).
func kernelHasIPIP(t testing.TB) bool {
	t.Helper()
	ns := uniqueName("tbyipip")
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	defer func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	}()
	return exec.Command("ip", "-n", ns, "link", "add", "name", "tbyipip0", "type", "ipip").Run() == nil
}

func runMatrixCases(t *testing.T, w *world, cases []matrixCase) {
	names, group := matrixNames, 3
	base := allAllowed(names, group)
	everything := map[string]*truthTable{"icmp": base}
	for _, p := range allProbes {
		everything[p] = base
	}
	// The default profile: everyone on the network reaches everyone
	// (once routes between the hosts are up).
	t0 := time.Now()
	if !w.expect(t, names, group, everything) {
		t.Fatal("the default profile does not allow traffic within the network")
	}
	t.Logf("the default matrix after %s", time.Since(t0).Round(time.Millisecond))
	for _, tc := range cases {
		restored := true
		t.Run(tc.name, func(t *testing.T) {
			w := w.with(t)
			want := expandChecks(t, names, group, tc.checks)
			same := true
			for _, tt := range want {
				same = same && tt.equal(base)
			}
			if same {
				t.Fatal("the case expects the default matrix: it could not tell a dataplane that ignored it")
			}
			var refs []objRef
			var restore []func()
			defer func() {
				w.remove(refs)
				for _, f := range restore {
					f()
				}
				time.Sleep(settle)
				back := map[string]*truthTable{}
				for p := range want {
					back[p] = base
				}
				if !w.expect(t, names, group, back) {
					restored = false
					t.Error("the default matrix did not come back after the case was removed")
				}
			}()
			for name, p := range tc.namedPorts {
				proto, port, _ := strings.Cut(p, "/")
				n, _ := strconv.Atoi(port)
				old := w.setPorts(name, []api.WorkloadEndpointPort{{Name: "web", Protocol: api.Protocol(proto), Port: uint16(n)}})
				restore = append(restore, func() { w.setPorts(name, old) })
			}
			manifest := tc.manifest
			if w.family == 6 && tc.manifest6 != "" {
				manifest = tc.manifest6
			}
			refs = w.apply(manifest)
			time.Sleep(settle)
			w.expect(t, names, group, want)
		})
		if !restored {
			t.Fatal("stopping: a case left the lab in an unknown state")
		}
	}
}
