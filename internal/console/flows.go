package console

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/api"
)

// FlowsPath is the agents' flow API: newline-delimited JSON FlowRecords.
const FlowsPath = "/flows"

// FlowRecord mirrors the agents' flow record (the JSON of GET /flows).
type FlowRecord struct {
	Start         time.Time   `json:"start"`
	End           time.Time   `json:"end"`
	Node          string      `json:"node"`
	Proto         string      `json:"proto"`
	SrcIP         string      `json:"srcIP"`
	SrcPort       int         `json:"srcPort"`
	DstIP         string      `json:"dstIP"`
	DstPort       int         `json:"dstPort"`
	Direction     string      `json:"direction"`
	Src           FlowEnd     `json:"src"`
	Dst           FlowEnd     `json:"dst"`
	Action        string      `json:"action"`
	PendingAction string      `json:"pendingAction,omitempty"`
	Policy        *FlowPolicy `json:"policy,omitempty"`
	PendingPolicy *FlowPolicy `json:"pendingPolicy,omitempty"`
	Packets       uint64      `json:"packets"`
	Bytes         uint64      `json:"bytes"`
}

// FlowEnd is one side of a flow.
type FlowEnd struct {
	Namespace string            `json:"namespace,omitempty"`
	Name      string            `json:"name,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	App       string            `json:"app,omitempty"`
	Kind      string            `json:"kind,omitempty"`
}

// FlowPolicy is what decided a flow: a rule of a policy, or a tier's
// default (Rule -1).
type FlowPolicy struct {
	Tier      string `json:"tier,omitempty"`
	Name      string `json:"name,omitempty"`
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Rule      int    `json:"rule"`
}

// flowFilter is the flows page's query; the same names as the agents'.
type flowFilter struct {
	Namespace, Endpoint, Policy, Action, Since, Node string
}

func parseFlowFilter(q url.Values) (flowFilter, error) {
	f := flowFilter{Namespace: q.Get("namespace"), Endpoint: q.Get("endpoint"), Policy: q.Get("policy"),
		Action: strings.ToLower(q.Get("action")), Since: q.Get("since"), Node: q.Get("node")}
	if f.Action != "" && f.Action != "allow" && f.Action != "deny" {
		return f, fmt.Errorf("action: %q is not allow or deny", q.Get("action"))
	}
	if f.Since == "" {
		f.Since = "15m"
	}
	if _, err := f.sinceTime(time.Now()); err != nil {
		return f, err
	}
	return f, nil
}

// sinceTime reads since: a duration back from now or an RFC 3339 time.
func (f flowFilter) sinceTime(now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(f.Since); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, f.Since)
	if err != nil {
		return time.Time{}, fmt.Errorf("since: %q is not a duration (5m) or an RFC 3339 time", f.Since)
	}
	return t, nil
}

// query is the agents' query for f.
func (f flowFilter) query(now time.Time) url.Values {
	q := url.Values{}
	t, _ := f.sinceTime(now)
	q.Set("since", t.UTC().Format(time.RFC3339Nano))
	for k, v := range map[string]string{"namespace": f.Namespace, "endpoint": f.Endpoint, "policy": f.Policy, "action": f.Action} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// matches applies f to a record (the agents filter too; this keeps the
// page right whatever an agent does).
func (f flowFilter) matches(r *FlowRecord, since time.Time) bool {
	end := func(e FlowEnd, want string) bool {
		return e.Name == want || e.Namespace+"/"+e.Name == want
	}
	pol := func(p *FlowPolicy) bool {
		return p != nil && (p.Name == f.Policy || p.Tier+"."+p.Name == f.Policy || p.Namespace+"/"+p.Name == f.Policy)
	}
	switch {
	case f.Namespace != "" && r.Src.Namespace != f.Namespace && r.Dst.Namespace != f.Namespace:
		return false
	case f.Endpoint != "" && !end(r.Src, f.Endpoint) && !end(r.Dst, f.Endpoint):
		return false
	case f.Policy != "" && !pol(r.Policy) && !pol(r.PendingPolicy):
		return false
	case f.Action != "" && r.Action != f.Action:
		return false
	case f.Node != "" && r.Node != f.Node:
		return false
	case !r.End.IsZero() && r.End.Before(since):
		return false
	}
	return true
}

// maxFlowsShown bounds the flows page; maxFlowsRead what is read per node.
const (
	maxFlowsShown = 500
	maxFlowsRead  = 20000
)

// readFlows reads the recent flows of every node (not following),
// newest first. Errors name the nodes that did not answer.
func (s *Server) readFlows(ctx context.Context, nodes []*api.Node, f flowFilter) ([]*FlowRecord, []error) {
	now := time.Now()
	since, _ := f.sinceTime(now)
	q := f.query(now)
	var (
		mu   sync.Mutex
		all  []*FlowRecord
		errs []error
		wg   sync.WaitGroup
	)
	for _, n := range nodes {
		if f.Node != "" && n.Name != f.Node {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := s.nodeFlows(ctx, n, q)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("flows: %w", err))
			}
			for _, r := range rs {
				if r.Node == "" {
					r.Node = n.Name
				}
				if f.matches(r, since) {
					all = append(all, r)
				}
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(all, func(a, b *FlowRecord) int {
		return cmp.Or(b.End.Compare(a.End), strings.Compare(a.Node, b.Node), strings.Compare(a.SrcIP, b.SrcIP))
	})
	if len(all) > maxFlowsShown {
		all = all[:maxFlowsShown]
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return all, errs
}

// nodeFlows reads one agent's flows.
func (s *Server) nodeFlows(ctx context.Context, n *api.Node, q url.Values) ([]*FlowRecord, error) {
	resp, err := s.agentGet(ctx, n, FlowsPath, q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []*FlowRecord
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() && len(out) < maxFlowsRead {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r FlowRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return out, fmt.Errorf("node %s: %s: record %d: %w", n.Name, FlowsPath, len(out)+1, err)
		}
		out = append(out, &r)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("node %s: read %s: %w", n.Name, FlowsPath, err)
	}
	return out, nil
}

// flowView is a record as a row of the flows page.
type flowView struct {
	*FlowRecord
}

// SrcText and DstText are "ns/name" (or the address when unknown).
func (v flowView) SrcText() string { return endText(v.Src, v.SrcIP) }
func (v flowView) DstText() string { return endText(v.Dst, v.DstIP) }

func endText(e FlowEnd, ip string) string {
	if e.Name == "" {
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

func hostPort(ip string, port int) string {
	if port == 0 {
		return ip
	}
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + strconv.Itoa(port)
	}
	return ip + ":" + strconv.Itoa(port)
}

// PolicyText names what decided the flow.
func (v flowView) PolicyText() string { return policyText(v.Policy) }

// PendingText names what a staged policy would have decided.
func (v flowView) PendingText() string { return policyText(v.PendingPolicy) }

func policyText(p *FlowPolicy) string {
	if p == nil {
		return ""
	}
	if p.Name == "" {
		if p.Tier != "" {
			return "tier " + p.Tier + " default"
		}
		return p.Kind
	}
	id := p.Name
	if p.Namespace != "" {
		id = p.Namespace + "/" + p.Name
	}
	s := p.Kind + " " + id
	if p.Tier != "" && p.Kind != "Profile" {
		s = p.Tier + ": " + s
	}
	if p.Rule >= 0 {
		s += " rule " + strconv.Itoa(p.Rule)
	} else {
		s += " (tier default)"
	}
	return s
}

// PolicyLink is the page of the deciding policy ("" when none has one).
func (v flowView) PolicyLink() string  { return flowPolicyLink(v.Policy) }
func (v flowView) PendingLink() string { return flowPolicyLink(v.PendingPolicy) }

func flowPolicyLink(p *FlowPolicy) string {
	if p == nil {
		return ""
	}
	if p.Name == "" {
		if p.Tier != "" {
			return "/policies#tier-" + p.Tier
		}
		return ""
	}
	return policyLink(p.Kind, p.Namespace, p.Name)
}
