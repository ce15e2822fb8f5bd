package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/flows"
)

// flowFilter is the flows page's query: the agents' filter (the same
// parameter names as GET /flows) and the node.
type flowFilter struct {
	flows.Filter
	// Since is the since parameter as given ("15m" by default).
	Since string
	Node  string
	// Src and Dst select the flows from and to an endpoint (name,
	// namespace/name or address); the console applies them.
	Src, Dst string
}

func parseFlowFilter(q url.Values, now time.Time) (flowFilter, error) {
	f := flowFilter{Since: cmp.Or(q.Get("since"), "15m"), Node: q.Get("node"), Src: q.Get("src"), Dst: q.Get("dst")}
	aq := url.Values{}
	for k, v := range q {
		aq[k] = v
	}
	aq.Set("since", f.Since)
	aq.Set("action", strings.ToLower(q.Get("action")))
	var err error
	f.Filter, err = flows.FilterFromQuery(aq, now)
	return f, err
}

// agentFilter is what the agents are asked: f's filter, narrowed to the
// src or dst endpoint when no endpoint is given (the agents match either
// side; the console then keeps the right one).
func (f flowFilter) agentFilter() flows.Filter {
	af := f.Filter
	if af.Endpoint == "" && !isAddr(f.Dst) && !isAddr(f.Src) {
		af.Endpoint = cmp.Or(f.Dst, f.Src)
	}
	return af
}

func isAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// match is the agents' filter plus the console's own (node, src, dst).
func (f flowFilter) match(r *flows.FlowRecord) bool {
	side := func(e *flows.Endpoint, ip, want string) bool {
		if want == "" || ip == want {
			return true
		}
		return e != nil && (e.Name == want || cmp.Or(e.Namespace, api.DefaultNamespace)+"/"+e.Name == want)
	}
	return f.Match(r) && (f.Node == "" || r.Node == f.Node) && side(r.Src, r.SrcIP, f.Src) && side(r.Dst, r.DstIP, f.Dst)
}

// maxFlowsShown bounds the flows page; maxFlowsRead what is read per node.
const (
	maxFlowsShown = 500
	maxFlowsRead  = 20000
)

var errEnough = errors.New("enough records")

// readFlows reads the recent flows of every node (not following),
// newest first. Errors name the nodes that did not answer.
func (s *Server) readFlows(ctx context.Context, nodes []*api.Node, f flowFilter) ([]*flows.FlowRecord, []error) {
	var (
		mu   sync.Mutex
		all  []*flows.FlowRecord
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, agentConcurrency)
	)
	for _, n := range nodes {
		if f.Node != "" && n.Name != f.Node {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			rs, err := s.nodeFlows(ctx, n, f.agentFilter())
			<-sem
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("flows: node %s: %w", n.Name, err))
			}
			for _, r := range rs {
				if r.Node == "" {
					r.Node = n.Name
				}
				// The agents filter too; this keeps the page right
				// whatever an agent does.
				if f.match(r) {
					all = append(all, r)
				}
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(all, func(a, b *flows.FlowRecord) int {
		return cmp.Or(b.End.Compare(a.End), strings.Compare(a.Node, b.Node), strings.Compare(a.SrcIP, b.SrcIP))
	})
	if len(all) > maxFlowsShown {
		all = all[:maxFlowsShown]
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return all, errs
}

// nodeFlows reads one agent's flows (at most maxFlowsRead).
func (s *Server) nodeFlows(ctx context.Context, n *api.Node, f flows.Filter) ([]*flows.FlowRecord, error) {
	addr := s.agentAddr(n)
	if addr == "" {
		return nil, errors.New("no address to reach its agent on")
	}
	var out []*flows.FlowRecord
	err := flows.Fetch(ctx, s.cfg.AgentClient, "http://"+addr, f, false, func(r flows.FlowRecord) error {
		out = append(out, &r)
		if len(out) >= maxFlowsRead {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return out, err
}

// flowView is a record as a row of the flows page.
type flowView struct {
	*flows.FlowRecord
}

// SrcText and DstText are "ns/name" (or the address when unknown).
func (v flowView) SrcText() string { return endText(v.Src, v.SrcIP) }
func (v flowView) DstText() string { return endText(v.Dst, v.DstIP) }

// SrcLabels and DstLabels are the endpoints' own labels, k=v (not those
// Calico adds, projectcalico.org/…).
func (v flowView) SrcLabels() []string { return ownLabels(v.Src) }
func (v flowView) DstLabels() []string { return ownLabels(v.Dst) }

func ownLabels(e *flows.Endpoint) []string {
	if e == nil {
		return nil
	}
	var out []string
	for _, l := range sortedLabels(e.Labels) {
		if !strings.HasPrefix(l, "projectcalico.org/") {
			out = append(out, l)
		}
	}
	return out
}

// SrcLink and DstLink are the endpoints' rows on the endpoints page
// (workload endpoints only).
func (v flowView) SrcLink() string { return endpointLink(v.Src) }
func (v flowView) DstLink() string { return endpointLink(v.Dst) }

func endpointLink(e *flows.Endpoint) string {
	if e == nil || e.Kind != flows.KindWorkload || e.Name == "" {
		return ""
	}
	return "/endpoints#ep-" + cmp.Or(e.Namespace, api.DefaultNamespace) + "-" + e.Name
}

// SrcApp and DstApp are the Mesos apps, where known.
func (v flowView) SrcApp() string { return appOf(v.Src) }
func (v flowView) DstApp() string { return appOf(v.Dst) }

func appOf(e *flows.Endpoint) string {
	if e == nil {
		return ""
	}
	return e.App
}

func endText(e *flows.Endpoint, ip string) string {
	if e == nil || e.Name == "" {
		return ip
	}
	if e.Namespace != "" {
		return e.Namespace + "/" + e.Name
	}
	return e.Name
}

// SrcAddr and DstAddr are ip:port.
func (v flowView) SrcAddr() string { return hostPort(v.SrcIP, v.SrcPort) }
func (v flowView) DstAddr() string { return hostPort(v.DstIP, v.DstPort) }

func hostPort(ip string, port uint16) string {
	if port == 0 {
		return ip
	}
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + strconv.Itoa(int(port))
	}
	return ip + ":" + strconv.Itoa(int(port))
}

// PolicyText names what decided the flow.
func (v flowView) PolicyText() string { return policyText(&v.Policy) }

// PendingText names what a staged policy would have decided.
func (v flowView) PendingText() string { return policyText(v.PendingPolicy) }

func policyText(p *flows.PolicyRef) string {
	if p == nil {
		return ""
	}
	if p.Kind == flows.PolicyKindDefault || p.Name == "" {
		s := "default"
		if p.Name != "" {
			s += " (" + p.Name + ")"
		}
		if p.Tier != "" {
			s = "tier " + p.Tier + " " + s
		}
		return s
	}
	id := p.Name
	if p.Namespace != "" {
		id = p.Namespace + "/" + p.Name
	}
	s := p.Kind + " " + id
	if p.Tier != "" && p.Kind != flows.PolicyKindProfile {
		s = p.Tier + ": " + s
	}
	if p.Rule >= 0 {
		s += " rule " + strconv.Itoa(p.Rule)
	} else {
		s += " (end of tier)"
	}
	return s
}

// PolicyLink is the page of the deciding policy ("" when none has one).
func (v flowView) PolicyLink() string  { return flowPolicyLink(&v.Policy) }
func (v flowView) PendingLink() string { return flowPolicyLink(v.PendingPolicy) }

func flowPolicyLink(p *flows.PolicyRef) string {
	switch {
	case p == nil:
		return ""
	case p.Kind == flows.PolicyKindDefault || p.Name == "":
		if p.Tier != "" {
			return "/policies#tier-" + p.Tier
		}
		return ""
	case p.Kind == "KubernetesNetworkPolicy":
		// Stored as the NetworkPolicy knp.default.<name>.
		return policyLink("NetworkPolicy", p.Namespace, api.K8sPolicyPrefix+p.Name)
	}
	return policyLink(p.Kind, p.Namespace, p.Name)
}
