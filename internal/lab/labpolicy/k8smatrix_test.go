package labpolicy

import (
	"testing"

	"github.com/tabbynet/tabby/internal/lab"
)

// The Kubernetes cases label the namespaces as the upstream network-policy
// e2e tests do (ns: x|y|z), with Kubernetes Namespace manifests; every
// namespace also has kubernetes.io/metadata.name.
const k8sNamespaces = `
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: "y", labels: {ns: "y"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: z, labels: {ns: z}}`

// Tables of the Kubernetes cases only (see matrix_test.go for the rest).
const (
	// x reachable from y and z, not from x itself.
	tXFromYZ = `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya ... -.. ...
yb ... .-. ...
yc ... ..- ...
za ... ... -..
zb ... ... .-.
zc ... ... ..-`
	// x sends only to y.
	tXToY = `
xa -XX ... XXX
xb X-X ... XXX
xc XX- ... XXX
ya ... -.. ...
yb ... .-. ...
yc ... ..- ...
za ... ... -..
zb ... ... .-.
zc ... ... ..-`
	// x sends everywhere but to ya.
	tXNotToYa = `
xa -.. X.. ...
xb .-. X.. ...
xc ..- X.. ...
ya ... -.. ...
yb ... .-. ...
yc ... ..- ...
za ... ... -..
zb ... ... .-.
zc ... ... ..-`
)

// k8sMatrixCases are upstream-style cases written as networking.k8s.io/v1
// NetworkPolicies, applied as `tabby apply -f` applies them.
var k8sMatrixCases = []matrixCase{
	{
		name: "k8s: default deny ingress (empty podSelector, policyTypes Ingress)",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}`,
		checks: []check{{"all", tXClosed}},
	},
	{
		name: "k8s: default deny egress (policyTypes Egress, no rules)",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}`,
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
		name: "k8s: empty ingress list denies ingress, egress [{}] allows all egress",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-in-allow-out, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress], ingress: [], egress: [{}]}`,
		checks: []check{{"all", tXClosed}},
	},
	{
		name: "k8s: allow from the same namespace (podSelector {} peer)",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: same-ns, namespace: x}
spec: {podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}`,
		checks: []check{{"all", tXFromX}},
	},
	{
		name: "k8s: namespaceSelector matches the Namespace's labels",
		manifest: k8sNamespaces + `
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-ns-y, namespace: x}
spec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]}`,
		checks: []check{{"all", tXFromY}},
	},
	{
		name: "k8s: namespaceSelector on kubernetes.io/metadata.name",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-z, namespace: x}
spec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]}]}`,
		checks: []check{{"all", tXFromZ}},
	},
	{
		name: "k8s: namespaceSelector matchExpressions NotIn",
		manifest: k8sNamespaces + `
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: not-from-x, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}}]}]`,
		checks: []check{{"all", tXFromYZ}},
	},
	{
		name: "k8s: namespaceSelector and podSelector in one peer are both required",
		manifest: k8sNamespaces + `
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: yb-zc, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from:
    - {namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: b}}}
    - {namespaceSelector: {matchLabels: {ns: z}}, podSelector: {matchLabels: {pod: c}}}`,
		checks: []check{{"all", tXFromYbZc}},
	},
	{
		name: "k8s: podSelector picks the pods the policy isolates",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-isolated, namespace: x}
spec: {podSelector: {matchLabels: {pod: b}}, policyTypes: [Ingress]}`,
		checks: []check{{"all", `
xa -X. ... ...
xb .-. ... ...
xc .X- ... ...
ya .X. -.. ...
yb .X. .-. ...
yc .X. ..- ...
za .X. ... -..
zb .X. ... .-.
zc .X. ... ..-`}},
	},
	{
		name: "k8s: a port without protocol is TCP",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: tcp-81, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{port: 81}]}]}`,
		checks: []check{{"tcp/81", tAll}, {"tcp/80 udp/80 udp/81", tXClosed}},
	},
	{
		name: "k8s: UDP port",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: udp-80, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{protocol: UDP, port: 80}]}]}`,
		checks: []check{{"udp/80", tAll}, {"tcp/80 tcp/81 udp/81", tXClosed}},
	},
	{
		name: "k8s: endPort makes a range",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: tcp-80-81, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{port: 80, endPort: 81}]}]}`,
		checks: []check{{"tcp/80 tcp/81", tAll}, {"udp/80 udp/81", tXClosed}},
	},
	{
		name:       "k8s: named ports resolve per endpoint",
		namedPorts: webPorts,
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{port: web}, {protocol: UDP, port: web}]}]}`,
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
		},
	},
	{
		name: "k8s: egress to a namespace only",
		manifest: k8sNamespaces + `
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: to-y, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]}`,
		checks: []check{{"all", tXToY}},
	},
	{
		name: "k8s: egress ipBlock with except",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: pool-but-ya, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: "{{pool}}", except: ["{{ip "ya"}}/32"]}}]}]`,
		checks: []check{{"all", tXNotToYa}},
	},
	{
		name: "k8s: ingress ipBlock from one pod's address",
		manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-ya, namespace: x}
spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: "{{ip "ya"}}/32"}}]}]}`,
		checks: []check{{"all", `
xa -XX ... ...
xb X-X ... ...
xc XX- ... ...
ya ... -.. ...
yb XXX .-. ...
yc XXX ..- ...
za XXX ... -..
zb XXX ... .-.
zc XXX ... ..-`}},
	},
}

// TestPrivilegedKubernetesPolicyMatrix runs the Kubernetes cases on the
// matrix (three hosts, no encapsulation) with real traffic.
func TestPrivilegedKubernetesPolicyMatrix(t *testing.T) {
	requirePrivileged(t)
	w := upWorld(t, lab.Config{Name: uniqueName("pk"), Nodes: 3})
	w.run(matrixContainers()...)
	runMatrixCases(t, w, k8sMatrixCases)
}
