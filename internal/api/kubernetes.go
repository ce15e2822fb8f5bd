package api

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// This file reads Kubernetes manifests: core v1 Namespaces (stored as
// Tabby Namespaces) and networking.k8s.io/v1 NetworkPolicies, translated
// as Calico's policy controller translates them (kube-controllers'
// conversion): a NetworkPolicy "knp.default.<name>" in the same namespace,
// in the default tier, at order 1000.

// Kubernetes API versions accepted on input.
const (
	K8sCoreAPIVersion       = "v1"
	K8sNetworkingAPIVersion = "networking.k8s.io/v1"
)

// K8sPolicyPrefix and K8sPolicyOrder are the name prefix and order of a
// translated Kubernetes NetworkPolicy, as Calico stores them.
const (
	K8sPolicyPrefix = "knp.default."
	K8sPolicyOrder  = float64(1000)
)

// Labels every namespace carries as seen by a namespaceSelector:
// LabelMetadataName as Kubernetes sets it, LabelNamespaceName as Calico
// does (its profile "kns.<ns>" carries pcns.projectcalico.org/name).
const (
	LabelMetadataName  = "kubernetes.io/metadata.name"
	LabelNamespaceName = "projectcalico.org/name"
)

// Namespace gives a namespace labels that namespaceSelectors match (Tabby
// extension; Calico keeps them on the "kns.<ns>" profile that mirrors a
// Kubernetes Namespace). A namespace needs no object to be used: one
// without it has only its name labels.
type Namespace struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       NamespaceSpec `json:"spec,omitempty"`
}

// NamespaceSpec is accepted for Kubernetes manifests; Tabby uses none of it.
type NamespaceSpec struct {
	Finalizers []string `json:"finalizers,omitempty"`
}

func (*Namespace) KindInfo() KindInfo { return kindInfo("Namespace") }

// NamespaceLabels are the labels a namespaceSelector sees for namespace
// ns: those of its Namespace object (nil: none), plus its name as
// kubernetes.io/metadata.name and projectcalico.org/name.
func NamespaceLabels(ns string, obj *Namespace) map[string]string {
	l := map[string]string{}
	if obj != nil {
		for k, v := range obj.Labels {
			l[k] = v
		}
	}
	l[LabelMetadataName] = ns
	l[LabelNamespaceName] = ns
	return l
}

// ---- networking.k8s.io/v1 NetworkPolicy ----

type k8sNetworkPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       k8sPolicySpec `json:"spec"`
}

type k8sPolicySpec struct {
	PodSelector k8sLabelSelector `json:"podSelector"`
	Ingress     []k8sIngressRule `json:"ingress,omitempty"`
	Egress      []k8sEgressRule  `json:"egress,omitempty"`
	PolicyTypes []string         `json:"policyTypes,omitempty"`
}

type k8sIngressRule struct {
	Ports []k8sPolicyPort `json:"ports,omitempty"`
	From  []k8sPeer       `json:"from,omitempty"`
}

type k8sEgressRule struct {
	Ports []k8sPolicyPort `json:"ports,omitempty"`
	To    []k8sPeer       `json:"to,omitempty"`
}

type k8sPeer struct {
	PodSelector       *k8sLabelSelector `json:"podSelector,omitempty"`
	NamespaceSelector *k8sLabelSelector `json:"namespaceSelector,omitempty"`
	IPBlock           *k8sIPBlock       `json:"ipBlock,omitempty"`
}

type k8sIPBlock struct {
	CIDR   string   `json:"cidr"`
	Except []string `json:"except,omitempty"`
}

type k8sPolicyPort struct {
	Protocol *string         `json:"protocol,omitempty"`
	Port     *k8sIntOrString `json:"port,omitempty"`
	EndPort  *int64          `json:"endPort,omitempty"`
}

type k8sLabelSelector struct {
	MatchLabels      map[string]string        `json:"matchLabels,omitempty"`
	MatchExpressions []k8sSelectorRequirement `json:"matchExpressions,omitempty"`
}

type k8sSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// k8sIntOrString is a port number or a port name.
type k8sIntOrString struct {
	Str   string
	Int   int64
	IsInt bool
}

func (v *k8sIntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &v.Str)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("got %s; a port number or name is required", b)
	}
	v.Int, v.IsInt = n, true
	return nil
}

// isKubernetesDocument reports whether a document is a Kubernetes object
// that decodeKubernetes reads.
func isKubernetesDocument(apiVersion, kind string) bool {
	switch {
	case apiVersion == K8sNetworkingAPIVersion:
		return true
	case apiVersion == K8sCoreAPIVersion && strings.EqualFold(kind, "Namespace"):
		return true
	}
	return false
}

// decodeKubernetes decodes a Kubernetes object into the resource Tabby
// stores for it. It returns the kind for messages.
func decodeKubernetes(obj map[string]any, apiVersion, kind string, validate bool) (Resource, string, error) {
	if apiVersion == K8sCoreAPIVersion {
		obj["apiVersion"], obj["kind"] = APIVersion, "Namespace"
		r, err := strictInto(obj, &Namespace{})
		if err != nil {
			return nil, "Namespace", err
		}
		return finish(r, validate)
	}
	if !strings.EqualFold(kind, "NetworkPolicy") {
		return nil, "", FieldErrors{{Field: "kind", Detail: fmt.Sprintf("%s is not supported with apiVersion %s; only NetworkPolicy is", quote(kind), K8sNetworkingAPIVersion)}}
	}
	obj["kind"] = "NetworkPolicy"
	var k k8sNetworkPolicy
	if _, err := strictInto(obj, &k); err != nil {
		return nil, "NetworkPolicy", err
	}
	var p problems
	np := k.translate(&p)
	if err := p.err(); err != nil {
		return nil, "NetworkPolicy", err
	}
	return finish(np, validate)
}

// strictInto checks obj against r's type, as decodeResource does, and
// decodes it.
func strictInto(obj map[string]any, r any) (any, error) {
	var p problems
	p.checkValue("", obj, reflect.TypeOf(r).Elem())
	if err := p.err(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(dropNulls(obj))
	if err == nil {
		err = json.Unmarshal(b, r)
	}
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return r, nil
}

func finish(v any, validate bool) (Resource, string, error) {
	r := v.(Resource)
	k := r.KindInfo()
	tm := r.GetTypeMeta()
	tm.APIVersion, tm.Kind = APIVersion, k.Kind
	if validate {
		SetDefaults(r)
		if err := Validate(r); err != nil {
			return nil, k.Kind, err
		}
	}
	return r, k.Kind, nil
}

// translate makes the Calico policy of a Kubernetes NetworkPolicy,
// recording every problem of the input in p.
func (k *k8sNetworkPolicy) translate(p *problems) *NetworkPolicy {
	ns := k.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	if k.Name == "" {
		p.add("metadata.name", "is required")
	}
	order := K8sPolicyOrder
	np := &NetworkPolicy{
		ObjectMeta: ObjectMeta{Name: K8sPolicyPrefix + k.Name, Namespace: ns},
		Spec: NetworkPolicySpec{
			Tier:     DefaultTierName,
			Order:    &order,
			Selector: k8sSelector(p, "spec.podSelector", &k.Spec.PodSelector, true),
			Types:    k8sPolicyTypes(p, &k.Spec),
		},
	}
	for i, r := range k.Spec.Ingress {
		f := index("spec.ingress", i)
		np.Spec.Ingress = append(np.Spec.Ingress, k8sRules(p, f, at(f, "from"), r.From, r.Ports, true)...)
	}
	for i, r := range k.Spec.Egress {
		f := index("spec.egress", i)
		np.Spec.Egress = append(np.Spec.Egress, k8sRules(p, f, at(f, "to"), r.To, r.Ports, false)...)
	}
	// Empty rule lists stay empty (nil), so that a policy of type
	// Ingress with no ingress rules denies all ingress.
	return np
}

// k8sPolicyTypes applies Kubernetes' default: Ingress, plus Egress when
// there are egress rules.
func k8sPolicyTypes(p *problems, s *k8sPolicySpec) []string {
	if len(s.PolicyTypes) == 0 {
		t := []string{PolicyTypeIngress}
		if len(s.Egress) > 0 {
			t = append(t, PolicyTypeEgress)
		}
		return t
	}
	var in, out bool
	for i, t := range s.PolicyTypes {
		switch t {
		case PolicyTypeIngress:
			in = true
		case PolicyTypeEgress:
			out = true
		default:
			p.add(index("spec.policyTypes", i), "%s is not a policy type: use Ingress or Egress", quote(t))
		}
	}
	var t []string
	if in {
		t = append(t, PolicyTypeIngress)
	}
	if out {
		t = append(t, PolicyTypeEgress)
	}
	return t
}

// podMarker matches every workload endpoint (each carries
// projectcalico.org/orchestrator): a translated pod selector requires it,
// as Calico's requires orchestrator == 'k8s', so that it matches
// workloads only, never network sets.
const podMarker = "has(" + LabelOrchestrator + ")"

// k8sSelector translates a label selector. A pod selector always carries
// podMarker; an empty namespace selector is all().
func k8sSelector(p *problems, field string, s *k8sLabelSelector, pod bool) string {
	var terms []string
	if pod {
		terms = append(terms, podMarker)
	}
	if s == nil {
		return strings.Join(terms, " && ")
	}
	p.checkLabels(at(field, "matchLabels"), s.MatchLabels)
	for _, key := range sortedKeys(s.MatchLabels) {
		terms = append(terms, fmt.Sprintf("%s == '%s'", key, s.MatchLabels[key]))
	}
	for i, e := range s.MatchExpressions {
		if t := k8sRequirement(p, index(at(field, "matchExpressions"), i), e); t != "" {
			terms = append(terms, t)
		}
	}
	if len(terms) == 0 {
		return "all()"
	}
	return strings.Join(terms, " && ")
}

func k8sRequirement(p *problems, f string, e k8sSelectorRequirement) string {
	if why := qualifiedNameProblem(e.Key); why != "" {
		p.add(at(f, "key"), "%s is not a valid label key: %s", quote(e.Key), why)
		return ""
	}
	for j, v := range e.Values {
		if why := labelValueProblem(v); why != "" {
			p.add(index(at(f, "values"), j), "%s is not a valid label value: %s", quote(v), why)
			return ""
		}
	}
	list := func() string {
		q := make([]string, len(e.Values))
		for j, v := range e.Values {
			q[j] = "'" + v + "'"
		}
		return "{" + strings.Join(q, ", ") + "}"
	}
	switch e.Operator {
	case "In", "NotIn":
		if len(e.Values) == 0 {
			p.add(at(f, "values"), "is required with operator %s", e.Operator)
			return ""
		}
		if e.Operator == "In" {
			return e.Key + " in " + list()
		}
		return e.Key + " not in " + list()
	case "Exists", "DoesNotExist":
		if len(e.Values) > 0 {
			p.add(at(f, "values"), "must be empty with operator %s", e.Operator)
			return ""
		}
		if e.Operator == "Exists" {
			return "has(" + e.Key + ")"
		}
		return "!has(" + e.Key + ")"
	}
	p.add(at(f, "operator"), "%s is not an operator: use In, NotIn, Exists or DoesNotExist", quote(e.Operator))
	return ""
}

// k8sRules translates one Kubernetes rule: one Allow rule per protocol and
// peer, as Calico does (no peers: any source or destination; no ports:
// any protocol and port).
func k8sRules(p *problems, field, peerField string, peers []k8sPeer, ports []k8sPolicyPort, ingress bool) []Rule {
	protos, byProto := k8sPorts(p, at(field, "ports"), ports)
	ents := []EntityRule{{}}
	if len(peers) > 0 {
		ents = ents[:0]
		for i := range peers {
			ents = append(ents, k8sPeerEntity(p, index(peerField, i), &peers[i]))
		}
	}
	var out []Rule
	for _, proto := range protos {
		for _, e := range ents {
			r := Rule{Action: ActionAllow}
			if proto != "" {
				pr := Protocol(proto)
				r.Protocol = &pr
			}
			if ingress {
				r.Source = e
				r.Destination.Ports = byProto[proto]
			} else {
				r.Destination = e
				r.Destination.Ports = byProto[proto]
			}
			out = append(out, r)
		}
	}
	return out
}

// k8sPorts groups ports by protocol, sorted; "" (any protocol and port)
// when there are none or one entry is empty.
func k8sPorts(p *problems, field string, ports []k8sPolicyPort) ([]string, map[string][]Port) {
	byProto := map[string][]Port{}
	all := map[string]bool{} // protocol → every port
	for i, pp := range ports {
		f := index(field, i)
		proto := "TCP"
		if pp.Protocol != nil {
			proto = *pp.Protocol
			if proto != "TCP" && proto != "UDP" && proto != "SCTP" {
				p.add(at(f, "protocol"), "%s is not a protocol: use TCP, UDP or SCTP", quote(proto))
				continue
			}
		}
		port, ok := k8sPort(p, f, pp)
		switch {
		case !ok:
		case port == nil:
			all[proto] = true
			byProto[proto] = nil
		case !all[proto]:
			byProto[proto] = append(byProto[proto], *port)
		}
	}
	if len(ports) == 0 {
		return []string{""}, byProto
	}
	protos := make([]string, 0, len(byProto))
	for k := range byProto {
		protos = append(protos, k)
	}
	sort.Strings(protos)
	return protos, byProto
}

// k8sPort reads one port entry: nil for "every port of the protocol".
func k8sPort(p *problems, f string, pp k8sPolicyPort) (*Port, bool) {
	if pp.Port == nil {
		if pp.EndPort != nil {
			p.add(at(f, "endPort"), "%d is not allowed without port", *pp.EndPort)
			return nil, false
		}
		return nil, true
	}
	if !pp.Port.IsInt {
		name := pp.Port.Str
		switch {
		case !isPortName(name):
			p.add(at(f, "port"), "%s is not a port name: use at most 15 letters, digits and '-', starting with a letter", quote(name))
			return nil, false
		case pp.EndPort != nil:
			p.add(at(f, "endPort"), "%d is not allowed with the named port %s", *pp.EndPort, quote(name))
			return nil, false
		}
		return &Port{PortName: name}, true
	}
	n := pp.Port.Int
	if n < 1 || n > 65535 {
		p.add(at(f, "port"), "%d is not a port: use 1 to 65535", n)
		return nil, false
	}
	end := n
	if pp.EndPort != nil {
		end = *pp.EndPort
		if end < n || end > 65535 {
			p.add(at(f, "endPort"), "%d is not a port from port (%d) to 65535", end, n)
			return nil, false
		}
	}
	return &Port{MinPort: uint16(n), MaxPort: uint16(end)}, true
}

// k8sPeerEntity translates a peer: an ipBlock is nets and notNets; pod and
// namespace selectors are selector and namespaceSelector (a pod selector
// alone means the policy's namespace).
func k8sPeerEntity(p *problems, f string, peer *k8sPeer) EntityRule {
	if b := peer.IPBlock; b != nil {
		if peer.PodSelector != nil || peer.NamespaceSelector != nil {
			p.add(f, "ipBlock cannot be combined with podSelector or namespaceSelector")
			return EntityRule{}
		}
		return k8sIPBlockEntity(p, at(f, "ipBlock"), b)
	}
	if peer.PodSelector == nil && peer.NamespaceSelector == nil {
		p.add(f, "is empty: set podSelector, namespaceSelector or ipBlock")
		return EntityRule{}
	}
	e := EntityRule{Selector: k8sSelector(p, at(f, "podSelector"), peer.PodSelector, true)}
	if peer.NamespaceSelector != nil {
		e.NamespaceSelector = k8sSelector(p, at(f, "namespaceSelector"), peer.NamespaceSelector, false)
	}
	return e
}

func k8sIPBlockEntity(p *problems, f string, b *k8sIPBlock) EntityRule {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		p.add(at(f, "cidr"), "%s is not a CIDR", quote(b.CIDR))
		return EntityRule{}
	}
	e := EntityRule{Nets: []string{cidr.Masked().String()}}
	for i, s := range b.Except {
		ex, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			p.add(index(at(f, "except"), i), "%s is not a CIDR", quote(s))
			continue
		case ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() <= cidr.Bits() || !cidr.Contains(ex.Addr()):
			p.add(index(at(f, "except"), i), "%s is not a strict subset of cidr %s", quote(s), quote(b.CIDR))
			continue
		}
		if s := ex.Masked().String(); !slices.Contains(e.NotNets, s) {
			e.NotNets = append(e.NotNets, s)
		}
	}
	return e
}

// checkNamespace checks a Namespace: its name is a namespace name, and
// kubernetes.io/metadata.name (which SetDefaults sets) is that name.
func (p *problems) checkNamespace(n *Namespace) {
	// checkMeta has checked the name as a resource name; a namespace's
	// is also a DNS label: no '.', at most 63 characters.
	if strings.Contains(n.Name, ".") || len(n.Name) > maxLabelLen {
		p.add("metadata.name", "%s is not a valid namespace: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit", quote(n.Name))
	}
	if v, ok := n.Labels[LabelMetadataName]; ok && v != n.Name {
		p.add(key("metadata.labels", LabelMetadataName), "%s must be the namespace's name %s", quote(v), quote(n.Name))
	}
}
