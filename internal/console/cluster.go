package console

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/api/selector"
)

// cluster is one read of the datastore's nodes, endpoints and policies,
// taken for one page.
type cluster struct {
	Nodes      []*api.Node
	Endpoints  []*endpointView
	Tiers      []*tierView
	Profiles   []*api.Profile
	namespaces map[string]*api.Namespace
}

// endpointView is a workload or host endpoint as the console shows it:
// its labels as selectors see them.
type endpointView struct {
	// Kind is WorkloadEndpoint or HostEndpoint.
	Kind string
	// Namespace is a workload endpoint's namespace ("default" when
	// unset); "" for a host endpoint.
	Namespace string
	Name      string
	Node      string
	Addresses []string
	// Labels are the effective labels: profiles' labelsToApply, its own,
	// and projectcalico.org/namespace, orchestrator, serviceaccount.
	Labels map[string]string
	// App is the Mesos (Marathon) app, when the endpoint has one.
	App string
	// Workload is a workload endpoint's workload (container), Interface
	// the interface it protects.
	Workload, Interface string
	Profiles            []string
	serviceAccount      string
	// Policies are the policies that select it, in tier order.
	Policies []*policyView
	nsLabels map[string]string
}

// tierView is a tier with its policies in order.
type tierView struct {
	Name          string
	Order         string
	DefaultAction string
	Policies      []*policyView
	order         float64
}

// policyView is a NetworkPolicy or GlobalNetworkPolicy with the endpoints
// it selects.
type policyView struct {
	Kind      string
	Namespace string // NetworkPolicy only
	Name      string
	Tier      string
	Order     string
	Selector  string
	NSSel     string
	Types     []string
	Ingress   []api.Rule
	Egress    []api.Rule
	// Selected are the endpoints the policy applies to.
	Selected []*endpointView
	// Problem is why its selectors do not parse ("": they do).
	Problem string
	// Staged: a staged policy (evaluated, never enforced); StagedDelete:
	// it stages the deletion of the policy of its name.
	Staged       bool
	StagedDelete bool
	order        float64
	sel          *selector.Selector
	nsSel        *selector.Selector
	saSel        *selector.Selector
	hostOnly     bool
}

// Link is the policy's page.
func (p *policyView) Link() string { return policyLink(p.Kind, p.Namespace, p.Name) }

// ID is "namespace/name" or "name".
func (p *policyView) ID() string {
	if p.Namespace != "" {
		return p.Namespace + "/" + p.Name
	}
	return p.Name
}

func policyLink(kind, ns, name string) string {
	q := "kind=" + urlQuery(kind) + "&name=" + urlQuery(name)
	if ns != "" {
		q += "&namespace=" + urlQuery(ns)
	}
	return "/policy?" + q
}

// readCluster lists what the policies and endpoints pages show.
func (s *Server) readCluster(ctx context.Context) (*cluster, error) {
	c := &cluster{namespaces: map[string]*api.Namespace{}}
	list := func(kind string) ([]api.Resource, error) {
		rs, _, err := s.client.List(ctx, kind, "")
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", kind, err)
		}
		return rs, nil
	}
	nodes, err := list("Node")
	if err != nil {
		return nil, err
	}
	for _, r := range nodes {
		c.Nodes = append(c.Nodes, r.(*api.Node))
	}
	slices.SortFunc(c.Nodes, func(a, b *api.Node) int { return strings.Compare(a.Name, b.Name) })
	nss, err := list("Namespace")
	if err != nil {
		return nil, err
	}
	for _, r := range nss {
		n := r.(*api.Namespace)
		c.namespaces[n.Name] = n
	}
	profs, err := list("Profile")
	if err != nil {
		return nil, err
	}
	byName := map[string]*api.Profile{}
	for _, r := range profs {
		p := r.(*api.Profile)
		c.Profiles = append(c.Profiles, p)
		byName[p.Name] = p
	}
	slices.SortFunc(c.Profiles, func(a, b *api.Profile) int { return strings.Compare(a.Name, b.Name) })
	weps, err := list("WorkloadEndpoint")
	if err != nil {
		return nil, err
	}
	for _, r := range weps {
		c.Endpoints = append(c.Endpoints, c.endpointView(r.(*api.WorkloadEndpoint), byName))
	}
	heps, err := list("HostEndpoint")
	if err != nil {
		return nil, err
	}
	for _, r := range heps {
		h := r.(*api.HostEndpoint)
		l := map[string]string{}
		for _, p := range h.Spec.Profiles {
			if pr, ok := byName[p]; ok {
				maps.Copy(l, pr.Spec.LabelsToApply)
			}
		}
		maps.Copy(l, h.Labels)
		c.Endpoints = append(c.Endpoints, &endpointView{Kind: "HostEndpoint", Name: h.Name, Node: h.Spec.Node, Addresses: h.Spec.ExpectedIPs,
			Labels: l, Interface: h.Spec.InterfaceName, Profiles: h.Spec.Profiles})
	}
	// Workload endpoints by namespace and name, then host endpoints.
	slices.SortFunc(c.Endpoints, func(a, b *endpointView) int {
		return cmp.Or(strings.Compare(b.Kind, a.Kind), strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	if err := s.readPolicies(ctx, c, list); err != nil {
		return nil, err
	}
	c.selectEndpoints()
	return c, nil
}

// endpointView normalizes an endpoint as the policy compiler sees it
// (internal/agent/policy effectiveLabels): profiles' labelsToApply, then
// its own labels, then the namespace, orchestrator and service account.
func (c *cluster) endpointView(w *api.WorkloadEndpoint, profiles map[string]*api.Profile) *endpointView {
	ns := w.Namespace
	if ns == "" {
		ns = api.DefaultNamespace
	}
	l := map[string]string{}
	for _, p := range w.Spec.Profiles {
		if pr, ok := profiles[p]; ok {
			maps.Copy(l, pr.Spec.LabelsToApply)
		}
	}
	maps.Copy(l, w.Labels)
	l[api.LabelNamespace] = ns
	if w.Spec.Orchestrator != "" {
		l[api.LabelOrchestrator] = w.Spec.Orchestrator
	}
	if w.Spec.ServiceAccountName != "" {
		l["projectcalico.org/serviceaccount"] = w.Spec.ServiceAccountName
	}
	e := &endpointView{Kind: "WorkloadEndpoint", Namespace: ns, Name: w.Name, Node: w.Spec.Node, Addresses: w.Spec.IPNetworks, Labels: l,
		Workload: w.Spec.Workload, Interface: w.Spec.InterfaceName, Profiles: w.Spec.Profiles, serviceAccount: w.Spec.ServiceAccountName,
		nsLabels: api.NamespaceLabels(ns, c.namespaces[ns])}
	if w.Spec.Mesos != nil {
		e.App = w.Spec.Mesos.App
	}
	return e
}

// readPolicies lists tiers (the built-in ones whether stored or not) and
// policies, each in its tier, in evaluation order.
func (s *Server) readPolicies(ctx context.Context, c *cluster, list func(string) ([]api.Resource, error)) error {
	tiers := map[string]*tierView{}
	addTier := func(name string, sp api.TierSpec) {
		t := &tierView{Name: name, DefaultAction: cmp.Or(sp.DefaultAction, api.ActionDeny), order: math.Inf(1), Order: "(none)"}
		if sp.Order != nil {
			t.order, t.Order = *sp.Order, fmtOrder(*sp.Order)
		}
		tiers[name] = t
	}
	for name, sp := range api.BuiltInTiers() {
		addTier(name, sp)
	}
	trs, err := list("Tier")
	if err != nil {
		return err
	}
	for _, r := range trs {
		t := r.(*api.Tier)
		addTier(t.Name, t.Spec)
	}
	var pols []*policyView
	nps, err := list("NetworkPolicy")
	if err != nil {
		return err
	}
	for _, r := range nps {
		p := r.(*api.NetworkPolicy)
		sp := p.Spec
		pols = append(pols, newPolicyView("NetworkPolicy", cmp.Or(p.Namespace, api.DefaultNamespace), p.Name,
			sp.Tier, sp.Order, sp.Selector, "", sp.ServiceAccountSelector, sp.Types, sp.Ingress, sp.Egress))
	}
	gps, err := list("GlobalNetworkPolicy")
	if err != nil {
		return err
	}
	for _, r := range gps {
		p := r.(*api.GlobalNetworkPolicy)
		sp := p.Spec
		pols = append(pols, newPolicyView("GlobalNetworkPolicy", "", p.Name,
			sp.Tier, sp.Order, sp.Selector, sp.NamespaceSelector, sp.ServiceAccountSelector, sp.Types, sp.Ingress, sp.Egress))
	}
	staged, err := readStaged(list)
	if err != nil {
		return err
	}
	pols = append(pols, staged...)
	slices.SortFunc(pols, func(a, b *policyView) int {
		return cmp.Or(cmp.Compare(a.order, b.order), strings.Compare(a.ID(), b.ID()))
	})
	for _, p := range pols {
		t, ok := tiers[p.Tier]
		if !ok {
			// A policy of a tier that does not exist: shown so, never enforced.
			addTier(p.Tier, api.TierSpec{})
			t = tiers[p.Tier]
			t.Order = "(tier does not exist)"
		}
		t.Policies = append(t.Policies, p)
	}
	for _, t := range tiers {
		c.Tiers = append(c.Tiers, t)
	}
	slices.SortFunc(c.Tiers, func(a, b *tierView) int {
		return cmp.Or(cmp.Compare(a.order, b.order), strings.Compare(a.Name, b.Name))
	})
	return nil
}

// readStaged lists the staged policies (Calico 3.30): shown in their
// tiers with what they would select, never enforced.
func readStaged(list func(string) ([]api.Resource, error)) ([]*policyView, error) {
	var out []*policyView
	add := func(p *policyView, action string) {
		p.Staged, p.StagedDelete = true, api.IsStagedDelete(action)
		out = append(out, p)
	}
	rs, err := list("StagedNetworkPolicy")
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		p := r.(*api.StagedNetworkPolicy)
		sp := p.Spec.NetworkPolicySpec
		add(newPolicyView("StagedNetworkPolicy", cmp.Or(p.Namespace, api.DefaultNamespace), p.Name,
			sp.Tier, sp.Order, sp.Selector, "", sp.ServiceAccountSelector, sp.Types, sp.Ingress, sp.Egress), p.Spec.StagedAction)
	}
	if rs, err = list("StagedGlobalNetworkPolicy"); err != nil {
		return nil, err
	}
	for _, r := range rs {
		p := r.(*api.StagedGlobalNetworkPolicy)
		sp := p.Spec.GlobalNetworkPolicySpec
		add(newPolicyView("StagedGlobalNetworkPolicy", "", p.Name,
			sp.Tier, sp.Order, sp.Selector, sp.NamespaceSelector, sp.ServiceAccountSelector, sp.Types, sp.Ingress, sp.Egress), p.Spec.StagedAction)
	}
	if rs, err = list("StagedKubernetesNetworkPolicy"); err != nil {
		return nil, err
	}
	for _, r := range rs {
		p := r.(*api.StagedKubernetesNetworkPolicy)
		ns := cmp.Or(p.Namespace, api.DefaultNamespace)
		np, err := p.Enforced()
		if err != nil {
			v := newPolicyView("StagedKubernetesNetworkPolicy", ns, p.Name, "", nil, "", "", "", nil, nil, nil)
			v.Problem = err.Error()
			add(v, p.Spec.StagedAction)
			continue
		}
		sp := np.Spec
		add(newPolicyView("StagedKubernetesNetworkPolicy", ns, p.Name,
			sp.Tier, sp.Order, sp.Selector, "", sp.ServiceAccountSelector, sp.Types, sp.Ingress, sp.Egress), p.Spec.StagedAction)
	}
	return out, nil
}

func newPolicyView(kind, ns, name, tier string, order *float64, sel, nsSel, saSel string, types []string, in, out []api.Rule) *policyView {
	p := &policyView{Kind: kind, Namespace: ns, Name: name, Tier: cmp.Or(tier, api.DefaultTierName),
		Selector: cmp.Or(sel, "all()"), NSSel: nsSel, Types: types, Ingress: in, Egress: out, order: math.Inf(1), Order: "(none)"}
	if order != nil {
		p.order, p.Order = *order, fmtOrder(*order)
	}
	var problems []string
	parse := func(field, s string) *selector.Selector {
		if s == "" {
			return nil
		}
		x, err := selector.Parse(s)
		if err != nil {
			problems = append(problems, fmt.Sprintf("spec.%s %q: %v", field, s, err))
		}
		return x
	}
	p.sel = parse("selector", sel)
	p.nsSel = parse("namespaceSelector", nsSel)
	p.saSel = parse("serviceAccountSelector", saSel)
	if p.nsSel != nil && p.nsSel.IsGlobal() {
		p.hostOnly, p.nsSel = true, nil
	}
	p.Problem = strings.Join(problems, "; ")
	return p
}

// selects says whether p applies to e, as the policy compiler decides it
// (internal/agent/policy selectsWorkload, selectsHost): a NetworkPolicy selects
// workload endpoints in its namespace, a GlobalNetworkPolicy every endpoint
// or, with a namespaceSelector, the workload endpoints of the namespaces it
// matches (global(): host endpoints only).
func (p *policyView) selects(e *endpointView) bool {
	if p.Problem != "" {
		return false
	}
	switch {
	case p.StagedDelete:
		return false
	case p.hostOnly && e.Kind != "HostEndpoint":
		return false
	case p.Namespace != "" && e.Namespace != p.Namespace:
		return false
	case p.nsSel != nil && (e.Namespace == "" || !p.nsSel.Evaluate(e.nsLabels)):
		return false
	}
	if p.saSel != nil {
		if e.serviceAccount == "" || !p.saSel.Evaluate(map[string]string{api.LabelNamespaceName: e.serviceAccount}) {
			return false
		}
	}
	return p.sel == nil || p.sel.Evaluate(e.Labels)
}

func (c *cluster) selectEndpoints() {
	for _, t := range c.Tiers {
		for _, p := range t.Policies {
			for _, e := range c.Endpoints {
				if p.selects(e) {
					p.Selected = append(p.Selected, e)
					e.Policies = append(e.Policies, p)
				}
			}
		}
	}
}

// policy finds a policy by kind, namespace and name (nil: none).
func (c *cluster) policy(kind, ns, name string) *policyView {
	for _, t := range c.Tiers {
		for _, p := range t.Policies {
			if p.Kind == kind && p.Name == name && (p.Namespace == "" || p.Namespace == cmp.Or(ns, api.DefaultNamespace)) {
				return p
			}
		}
	}
	return nil
}

func fmtOrder(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// sortedLabels are k=v, sorted.
func sortedLabels(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}
