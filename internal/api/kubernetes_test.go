package api

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestKubernetesNetworkPolicyTranslation checks that a networking.k8s.io/v1
// NetworkPolicy is stored as Calico's policy controller stores it.
func TestKubernetesNetworkPolicyTranslation(t *testing.T) {
	const head = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n"
	const want = "apiVersion: tabby.dev/v1\nkind: NetworkPolicy\nmetadata: {name: knp.default.p, namespace: x}\n"
	cases := []struct{ name, spec, want string }{
		{"deny all ingress (empty podSelector, no rules)",
			"spec: {podSelector: {}}",
			"spec: {tier: default, order: 1000, selector: has(projectcalico.org/orchestrator), types: [Ingress]}"},
		{"allow all ingress (one empty rule)",
			"spec: {podSelector: {}, ingress: [{}]}",
			"spec: {tier: default, order: 1000, selector: has(projectcalico.org/orchestrator), types: [Ingress], ingress: [{action: Allow}]}"},
		{"egress rules imply Egress",
			"spec: {podSelector: {matchLabels: {pod: a}}, egress: [{}]}",
			"spec: {tier: default, order: 1000, selector: \"has(projectcalico.org/orchestrator) && pod == 'a'\", types: [Ingress, Egress], egress: [{action: Allow}]}"},
		{"policyTypes Egress only, no egress rules: deny all egress",
			"spec: {podSelector: {}, policyTypes: [Egress]}",
			"spec: {tier: default, order: 1000, selector: has(projectcalico.org/orchestrator), types: [Egress]}"},
		{"empty ingress list with policyTypes [Ingress, Egress]",
			"spec: {podSelector: {}, policyTypes: [Ingress, Egress], ingress: [], egress: [{}]}",
			"spec: {tier: default, order: 1000, selector: has(projectcalico.org/orchestrator), types: [Ingress, Egress], egress: [{action: Allow}]}"},
		{"matchExpressions",
			"spec: {podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}, {key: tier, operator: NotIn, values: [db]}, {key: web, operator: Exists}, {key: x, operator: DoesNotExist}]}}",
			"spec: {tier: default, order: 1000, selector: \"has(projectcalico.org/orchestrator) && pod in {'a', 'b'} && tier not in {'db'} && has(web) && !has(x)\", types: [Ingress]}"},
		{"pod and namespace selectors, one rule per peer",
			"spec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}, {namespaceSelector: {matchLabels: {ns: \"y\"}}}, {namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}]}]}",
			`spec: {tier: default, order: 1000, selector: has(projectcalico.org/orchestrator), types: [Ingress], ingress: [
			  {action: Allow, source: {selector: "has(projectcalico.org/orchestrator) && pod == 'b'"}},
			  {action: Allow, source: {selector: has(projectcalico.org/orchestrator), namespaceSelector: "ns == 'y'"}},
			  {action: Allow, source: {selector: "has(projectcalico.org/orchestrator) && pod == 'c'", namespaceSelector: all()}}]}`},
		{"ipBlock with except, egress",
			"spec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]}]}",
			"spec: {tier: default, order: 1000, selector: has(projectcalico.org/orchestrator), types: [Egress], egress: [{action: Allow, destination: {nets: [10.0.0.0/8], notNets: [10.1.0.0/16]}}]}"},
		{"ports: default TCP, grouped by protocol, endPort, named",
			"spec: {podSelector: {}, ingress: [{ports: [{port: 80}, {protocol: UDP, port: 81}, {port: 8000, endPort: 8080}, {port: http}]}]}",
			`spec: {tier: default, order: 1000, selector: has(projectcalico.org/orchestrator), types: [Ingress], ingress: [
			  {action: Allow, protocol: TCP, destination: {ports: [80, "8000:8080", http]}},
			  {action: Allow, protocol: UDP, destination: {ports: [81]}}]}`},
		{"a protocol without port allows all its ports",
			"spec: {podSelector: {}, ingress: [{ports: [{protocol: UDP, port: 53}, {protocol: UDP}]}]}",
			"spec: {tier: default, order: 1000, selector: has(projectcalico.org/orchestrator), types: [Ingress], ingress: [{action: Allow, protocol: UDP}]}"},
		{"ports times peers",
			"spec: {podSelector: {}, ingress: [{from: [{podSelector: {}}, {ipBlock: {cidr: 192.0.2.0/24}}], ports: [{port: 80}, {protocol: UDP, port: 80}]}]}",
			`spec: {tier: default, order: 1000, selector: has(projectcalico.org/orchestrator), types: [Ingress], ingress: [
			  {action: Allow, protocol: TCP, source: {selector: has(projectcalico.org/orchestrator)}, destination: {ports: [80]}},
			  {action: Allow, protocol: TCP, source: {nets: [192.0.2.0/24]}, destination: {ports: [80]}},
			  {action: Allow, protocol: UDP, source: {selector: has(projectcalico.org/orchestrator)}, destination: {ports: [80]}},
			  {action: Allow, protocol: UDP, source: {nets: [192.0.2.0/24]}, destination: {ports: [80]}}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(head + tc.spec + "\n"))
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			exp, err := Decode([]byte(want + tc.want + "\n"))
			if err != nil {
				t.Fatalf("Decode(want) error = %v (bad test)", err)
			}
			if d := cmp.Diff(exp, got); d != "" {
				t.Errorf("translation differs (-want +got):\n%s", d)
			}
		})
	}
}

func TestKubernetesNetworkPolicyDefaultNamespace(t *testing.T) {
	rs, err := Decode([]byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec: {podSelector: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := rs[0].GetObjectMeta()
	if m.Name != "knp.default.deny" || m.Namespace != "default" {
		t.Errorf("got %s/%s; want default/knp.default.deny", m.Namespace, m.Name)
	}
}

// TestKubernetesBadManifests checks that every problem is an error naming
// the field and the value.
func TestKubernetesBadManifests(t *testing.T) {
	const head = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n"
	cases := []struct{ name, doc, want string }{
		{"bad cidr", head + "spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}",
			`document 1: NetworkPolicy "p": spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0/33" is not a CIDR`},
		{"except outside cidr", head + "spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]}",
			`spec.ingress[0].from[0].ipBlock.except[0]: "10.1.0.0/24" is not a strict subset of cidr "10.0.0.0/16"`},
		{"ipBlock with selector", head + "spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16}, podSelector: {}}]}]}",
			`spec.egress[0].to[0]: ipBlock cannot be combined with podSelector or namespaceSelector`},
		{"empty peer", head + "spec: {podSelector: {}, ingress: [{from: [{}]}]}",
			`spec.ingress[0].from[0]: is empty`},
		{"bad protocol", head + "spec: {podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}",
			`spec.ingress[0].ports[0].protocol: "ICMP" is not a protocol: use TCP, UDP or SCTP`},
		{"port out of range", head + "spec: {podSelector: {}, ingress: [{ports: [{port: 70000}]}]}",
			`spec.ingress[0].ports[0].port: 70000 is not a port`},
		{"endPort below port", head + "spec: {podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}",
			`spec.ingress[0].ports[0].endPort: 80 is not a port from port (90) to 65535`},
		{"endPort with named port", head + "spec: {podSelector: {}, ingress: [{ports: [{port: http, endPort: 80}]}]}",
			`spec.ingress[0].ports[0].endPort: 80 is not allowed with the named port "http"`},
		{"bad port name", head + "spec: {podSelector: {}, ingress: [{ports: [{port: \"-x\"}]}]}",
			`spec.ingress[0].ports[0].port: "-x" is not a port name`},
		{"bad operator", head + "spec: {podSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}}",
			`spec.podSelector.matchExpressions[0].operator: "Equals" is not an operator`},
		{"In without values", head + "spec: {podSelector: {matchExpressions: [{key: a, operator: In}]}}",
			`spec.podSelector.matchExpressions[0].values: is required with operator In`},
		{"bad label value", head + "spec: {podSelector: {matchLabels: {a: \"b c\"}}}",
			`spec.podSelector.matchLabels["a"]: "b c" is not a valid label value`},
		{"bad policy type", head + "spec: {podSelector: {}, policyTypes: [Inbound]}",
			`spec.policyTypes[0]: "Inbound" is not a policy type`},
		{"unknown field", head + "spec: {podSelector: {}, ingres: [{}]}",
			`spec.ingres: unknown field (did you mean "ingress"?)`},
		{"other networking kind", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec: {}\n",
			`kind: "Ingress" is not supported with apiVersion networking.k8s.io/v1`},
		{"bad namespace name", "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod.eu}\n",
			`document 1: Namespace "prod.eu": metadata.name: "prod.eu" is not a valid namespace`},
		{"namespace label", "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {team: \"a b\"}}\n",
			`metadata.labels["team"]: "a b" is not a valid label value`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Decode([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Decode() = %d resources, no error; want %q", len(rs), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode() error = %v; want it to contain %q", err, tc.want)
			}
			if rs != nil {
				t.Errorf("Decode() returned %d resources with the error; want none", len(rs))
			}
		})
	}
}

// TestNamespaceDecode checks that Kubernetes and Tabby Namespace manifests
// both decode, with kubernetes.io/metadata.name set.
func TestNamespaceDecode(t *testing.T) {
	for _, av := range []string{"v1", "tabby.dev/v1"} {
		t.Run(av, func(t *testing.T) {
			rs, err := Decode([]byte("apiVersion: " + av + "\nkind: Namespace\nmetadata: {name: prod, labels: {team: payments}}\nspec: {finalizers: [kubernetes]}\n"))
			if err != nil {
				t.Fatal(err)
			}
			ns, ok := rs[0].(*Namespace)
			if !ok {
				t.Fatalf("got %T; want *Namespace", rs[0])
			}
			want := map[string]string{"team": "payments", LabelMetadataName: "prod"}
			if d := cmp.Diff(want, ns.Labels); d != "" {
				t.Errorf("labels (-want +got):\n%s", d)
			}
			if ns.APIVersion != APIVersion {
				t.Errorf("apiVersion = %q; want %q", ns.APIVersion, APIVersion)
			}
		})
	}
}

// TestKubernetesDocExample checks the translation that
// docs/resources.md#kubernetes-networkpolicy shows.
func TestKubernetesDocExample(t *testing.T) {
	data, err := os.ReadFile("../../docs/resources.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i := strings.Index(doc, "## Kubernetes NetworkPolicy")
	if i < 0 {
		t.Fatal("docs/resources.md has no Kubernetes NetworkPolicy section")
	}
	doc = doc[i:]
	block := func(fence string) string {
		j := strings.Index(doc, fence+"\n")
		if j < 0 {
			t.Fatalf("no %s block in the section", fence)
		}
		rest := doc[j+len(fence)+1:]
		k := strings.Index(rest, "```")
		doc = rest[k+3:]
		return rest[:k]
	}
	in, out := block("```yaml"), block("```text")
	got, err := Decode([]byte(in))
	if err != nil {
		t.Fatalf("the Kubernetes example: %v", err)
	}
	want, err := Decode([]byte(out))
	if err != nil {
		t.Fatalf("the stored example: %v", err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("docs/resources.md: the stored policy differs from the translation (-doc +got):\n%s", d)
	}
}
