package flowlog

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/flows"
)

// Staged is what the staged policies make of the enforced ones: the
// policies they set (converted to the kinds they stage, under the same
// names) and those they delete, and the staged kind of each, for naming.
type Staged struct {
	Policies       []*api.NetworkPolicy
	GlobalPolicies []*api.GlobalNetworkPolicy
	// Deleted are enforced policies a staged one deletes (stagedAction
	// Delete), by ID: "NetworkPolicy/ns/name" or "GlobalNetworkPolicy/name".
	Deleted map[string]bool
	// Kinds maps the ID of each staged policy (as its enforced kind) to
	// its staged kind.
	Kinds map[string]string
}

// Empty reports whether there is nothing staged.
func (s *Staged) Empty() bool {
	return s == nil || len(s.Policies)+len(s.GlobalPolicies)+len(s.Deleted) == 0
}

// pendingState is s with the staged policies in force.
func (s *Staged) pendingState(st *policy.State) *policy.State {
	p := *st
	set := map[string]bool{}
	for _, np := range s.Policies {
		set["NetworkPolicy/"+namespaceOr(np.Namespace)+"/"+np.Name] = true
	}
	for _, gp := range s.GlobalPolicies {
		set["GlobalNetworkPolicy/"+gp.Name] = true
	}
	p.Policies = nil
	for _, np := range st.Policies {
		id := "NetworkPolicy/" + namespaceOr(np.Namespace) + "/" + np.Name
		if !set[id] && !s.Deleted[id] {
			p.Policies = append(p.Policies, np)
		}
	}
	p.Policies = append(p.Policies, s.Policies...)
	p.GlobalPolicies = nil
	for _, gp := range st.GlobalPolicies {
		id := "GlobalNetworkPolicy/" + gp.Name
		if !set[id] && !s.Deleted[id] {
			p.GlobalPolicies = append(p.GlobalPolicies, gp)
		}
	}
	p.GlobalPolicies = append(p.GlobalPolicies, s.GlobalPolicies...)
	return &p
}

// Attributor names the endpoints of a flow and replays it through the
// reference form of the host's ruleset to find what decided it (and what
// the staged policies would decide). It compiles lazily: a state change
// only marks it stale, the next flow compiles (at most every
// minRecompile).
type Attributor struct {
	node string

	mu       sync.Mutex
	state    *policy.State
	staged   *Staged
	dirty    bool
	compiled time.Time
	rs       *policy.Ruleset // enforced, reference form
	prs      *policy.Ruleset // pending (nil: nothing staged)
	eps      map[netip.Addr]*epInfo
	nodeIPs  []netip.Addr
	err      error
	// replays caches the records of a replay, without times, counters
	// and source port, by what the replay depends on.
	replays  map[replayKey][]flows.FlowRecord
	srcPorts bool // a rule reads source ports: they are part of the key
}

// epInfo is what the index knows of one address.
type epInfo struct {
	ep     *flows.Endpoint
	local  bool
	ifName string
	hep    bool // a host endpoint: its addresses are the host's
}

const minRecompile = 200 * time.Millisecond

// NewAttributor returns an attributor for node.
func NewAttributor(node string) *Attributor { return &Attributor{node: node} }

// SetState takes a new policy state (the one the dataplane programmed)
// and the staged policies.
func (a *Attributor) SetState(s *policy.State, staged *Staged) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state, a.staged, a.dirty = s, staged, true
}

// Update applies remote endpoint and network set changes to the state.
func (a *Attributor) Update(changes []policy.Change) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state == nil {
		return
	}
	s := *a.state
	for _, ch := range changes {
		obj := ch.New
		if obj == nil {
			obj = ch.Old
		}
		switch obj.(type) {
		case *api.WorkloadEndpoint:
			s.Endpoints = applyChange(s.Endpoints, ch)
		case *api.NetworkSet:
			s.NetworkSets = applyChange(s.NetworkSets, ch)
		case *api.GlobalNetworkSet:
			s.GlobalNetworkSets = applyChange(s.GlobalNetworkSets, ch)
		case *api.NetworkPolicy: // the engine takes policies that select nothing here
			s.Policies = applyChange(s.Policies, ch)
		case *api.GlobalNetworkPolicy:
			s.GlobalPolicies = applyChange(s.GlobalPolicies, ch)
		}
	}
	a.state, a.dirty = &s, true
}

// applyChange returns list with ch applied, as a new slice (the old one
// belongs to a view).
func applyChange[T api.Resource](list []T, ch policy.Change) []T {
	key := func(r api.Resource) string { m := r.GetObjectMeta(); return m.Namespace + "/" + m.Name }
	out := make([]T, 0, len(list)+1)
	var drop string
	if ch.Old != nil {
		drop = key(ch.Old)
	} else if ch.New != nil {
		drop = key(ch.New)
	}
	for _, x := range list {
		if key(x) != drop {
			out = append(out, x)
		}
	}
	if n, ok := ch.New.(T); ok && ch.New != nil {
		out = append(out, n)
	}
	return out
}

// current compiles when stale; the caller holds mu.
func (a *Attributor) current(now time.Time) bool {
	if a.state == nil {
		return false
	}
	if a.dirty && (a.rs == nil || now.Sub(a.compiled) >= minRecompile) {
		a.dirty, a.compiled = false, now
		rs, err := policy.Compile(a.state)
		if err != nil {
			a.err = err
			return a.rs != nil
		}
		a.rs, a.prs = rs, nil
		if !a.staged.Empty() {
			if prs, err := policy.Compile(a.staged.pendingState(a.state)); err == nil {
				a.prs = prs
			}
		}
		a.index()
		a.srcPorts = readsSourcePorts(a.rs) || readsSourcePorts(a.prs)
		a.replays = map[replayKey][]flows.FlowRecord{}
	}
	return a.rs != nil
}

// index builds the address → endpoint index.
func (a *Attributor) index() {
	s := a.state
	a.eps = map[netip.Addr]*epInfo{}
	a.nodeIPs = s.NodeIPs
	for _, w := range s.Endpoints {
		if w == nil {
			continue
		}
		// Named as Calico's flow logs name it: by its pod (a runtime
		// passing K8S_POD_NAME), else its Mesos task, else the
		// endpoint's own name.
		ep := &flows.Endpoint{Namespace: namespaceOr(w.Namespace), Name: w.Name, Labels: w.Labels, Kind: flows.KindWorkload}
		if w.Spec.Pod != "" {
			ep.Name = w.Spec.Pod
		}
		if m := w.Spec.Mesos; m != nil {
			ep.App = m.App
			if w.Spec.Pod == "" && m.TaskName != "" {
				ep.Name = m.TaskName
			}
		}
		info := &epInfo{ep: ep, local: w.Spec.Node == s.Node, ifName: w.Spec.InterfaceName}
		for _, n := range w.Spec.IPNetworks {
			if p, err := netip.ParsePrefix(n); err == nil {
				a.eps[p.Addr()] = info
			} else if ad, err := netip.ParseAddr(n); err == nil {
				a.eps[ad] = info
			}
		}
	}
	for _, h := range s.HostEndpoints {
		if h == nil {
			continue
		}
		info := &epInfo{ep: &flows.Endpoint{Name: h.Name, Labels: h.Labels, Kind: flows.KindHost},
			local: h.Spec.Node == s.Node, ifName: h.Spec.InterfaceName, hep: true}
		if info.ifName == "*" {
			info.ifName = uplink // the wildcard host endpoint takes any other interface
		}
		for _, ip := range h.Spec.ExpectedIPs {
			if ad, err := netip.ParseAddr(ip); err == nil {
				if _, ok := a.eps[ad]; !ok {
					a.eps[ad] = info
				}
			}
		}
	}
}

// netOf names an address no endpoint has by the network set holding it.
func (a *Attributor) netOf(addr netip.Addr) *flows.Endpoint {
	for _, ns := range a.state.NetworkSets {
		if ns != nil && containsAddr(ns.Spec.Nets, addr) {
			return &flows.Endpoint{Namespace: ns.Namespace, Name: ns.Name, Labels: ns.Labels, Kind: flows.KindNet}
		}
	}
	for _, gs := range a.state.GlobalNetworkSets {
		if gs != nil && containsAddr(gs.Spec.Nets, addr) {
			return &flows.Endpoint{Name: gs.Name, Labels: gs.Labels, Kind: flows.KindNet}
		}
	}
	return nil
}

func containsAddr(nets []string, a netip.Addr) bool {
	for _, n := range nets {
		if p, err := netip.ParsePrefix(n); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

func (a *Attributor) endpoint(addr netip.Addr) *flows.Endpoint {
	if e, ok := a.eps[addr]; ok {
		return e.ep
	}
	return a.netOf(addr)
}

// flow is a flow as a source saw it: its first packet's header (after
// DNAT: dst is the real destination), where it came in and went out when
// known, and counters.
type flow struct {
	family       int
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
	icmpType     uint8
	icmpCode     uint8
	// from NFLOG: the hook and interfaces the packet was dropped at
	hook     policy.HookPoint
	iif, oif string
	denied   bool
	start    time.Time
	end      time.Time
	packets  uint64
	bytes    uint64
	// replies: counters of the reply direction (conntrack), added to
	// the record of each side
	rpackets, rbytes uint64
}

const uplink = "tabby-uplink" // stands for any interface no endpoint owns

// packetOf places a flow at a hook: forwarded between endpoints, to the
// host (input) or from it (output).
func (a *Attributor) packetOf(f *flow) packet {
	p := packet{hook: f.hook, family: f.family, iif: f.iif, oif: f.oif, src: f.src, dst: f.dst, proto: f.proto,
		sport: f.sport, dport: f.dport, icmpType: f.icmpType, icmpCode: f.icmpCode}
	if p.hook != "" {
		p.daddrLocal = slices.Contains(a.nodeIPs, f.dst)
		return p
	}
	srcEP, dstEP := a.eps[f.src], a.eps[f.dst]
	srcHost := slices.Contains(a.nodeIPs, f.src) || srcEP != nil && srcEP.local && srcEP.hep
	dstHost := slices.Contains(a.nodeIPs, f.dst) || dstEP != nil && dstEP.local && dstEP.hep
	switch {
	case srcHost && dstEP != nil && dstEP.local && !dstEP.hep:
		p.hook, p.oif = policy.HookOutput, dstEP.ifName
	case dstHost:
		p.hook, p.daddrLocal, p.iif = policy.HookInput, true, uplink
		if srcEP != nil && srcEP.local && !srcEP.hep {
			p.iif = srcEP.ifName
		} else if dstEP != nil && dstEP.hep {
			p.iif = dstEP.ifName
		}
	case srcHost:
		p.hook, p.oif = policy.HookOutput, uplink
		if srcEP != nil && srcEP.hep {
			p.oif = srcEP.ifName
		}
	default:
		p.hook, p.iif, p.oif = policy.HookForward, uplink, uplink
		if srcEP != nil && srcEP.local {
			p.iif = srcEP.ifName
		}
		if dstEP != nil && dstEP.local {
			p.oif = dstEP.ifName
		}
	}
	return p
}

// Attribute turns one observed flow into the records of the local
// endpoints it passed (an egress record for a local source, an ingress
// one for a local destination).
func (a *Attributor) Attribute(f *flow, now time.Time) []flows.FlowRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.current(now) {
		return nil
	}
	if s, d := a.eps[f.src], a.eps[f.dst]; (s == nil || !s.local) && (d == nil || !d.local) {
		return nil // no local endpoint
	}
	// Flows that differ only in their source port (new connections of
	// one client to one service) are replayed once per compile, unless a
	// rule reads source ports.
	k := replayKey{family: f.family, proto: f.proto, src: f.src, dst: f.dst, sport: f.sport, dport: f.dport,
		icmpType: f.icmpType, icmpCode: f.icmpCode, hook: f.hook, iif: f.iif, oif: f.oif, denied: f.denied}
	if !a.srcPorts {
		k.sport = 0
	}
	tmpl, ok := a.replays[k]
	if !ok {
		tmpl = a.attribute(f)
		if len(a.replays) >= maxReplays {
			clear(a.replays)
		}
		a.replays[k] = tmpl
	}
	out := make([]flows.FlowRecord, len(tmpl))
	for i, r := range tmpl {
		r.Start, r.End = f.start, f.end
		r.Packets, r.Bytes = f.packets+f.rpackets, f.bytes+f.rbytes
		if f.proto != 1 && f.proto != 58 {
			r.SrcPort = f.sport
		}
		out[i] = r
	}
	return out
}

// replayKey is what a replay depends on.
type replayKey struct {
	family             int
	proto              uint8
	src, dst           netip.Addr
	sport, dport       uint16
	icmpType, icmpCode uint8
	hook               policy.HookPoint
	iif, oif           string
	denied             bool
}

// maxReplays bounds the replay cache (it is cleared when full, and at
// every compile).
const maxReplays = 4096

// readsSourcePorts reports whether any rule of rs matches a source port.
func readsSourcePorts(rs *policy.Ruleset) bool {
	if rs == nil {
		return false
	}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			for _, m := range r.Matches {
				switch m := m.(type) {
				case policy.Port:
					if m.Dir == policy.Src {
						return true
					}
				case policy.PortSet:
					if m.Dir == policy.Src {
						return true
					}
				case policy.AddrPortSet:
					if m.Dir == policy.Src {
						return true
					}
				}
			}
		}
	}
	return false
}

// attribute replays f and makes its records; the caller holds mu.
func (a *Attributor) attribute(f *flow) []flows.FlowRecord {
	pkt := a.packetOf(f)
	ds, _ := replay(a.rs, pkt)
	var pending []decision
	if a.prs != nil {
		pending, _ = replay(a.prs, pkt)
	}
	base := flows.FlowRecord{
		Start: f.start, End: f.end, Node: a.node, Proto: flows.ProtoName(f.proto),
		SrcIP: f.src.String(), SrcPort: f.sport, DstIP: f.dst.String(), DstPort: f.dport,
		Src: a.endpoint(f.src), Dst: a.endpoint(f.dst),
		Packets: f.packets + f.rpackets, Bytes: f.bytes + f.rbytes,
	}
	if f.proto == 1 || f.proto == 58 {
		base.SrcPort, base.DstPort = 0, uint16(f.icmpType)
	}
	var out []flows.FlowRecord
	for _, d := range ds {
		r := base
		r.Direction = flows.Egress
		if d.ingress {
			r.Direction = flows.Ingress
		}
		if d.chain == "" {
			// A base chain dropped it (dispatch, anti-spoofing,
			// endpoint to host): the local source's egress, else the
			// local destination's ingress.
			if e := a.eps[f.src]; e == nil || !e.local {
				r.Direction = flows.Ingress
			}
		}
		r.Action = flows.Deny
		if d.allow {
			r.Action = flows.Allow
		}
		r.Policy = a.policyRef(d, nil)
		if !f.denied && !d.allow {
			// The kernel let it through, the replay denies it: the
			// ruleset changed since. The kernel's verdict stands.
			r.Action = flows.Allow
			r.Policy = flows.PolicyRef{Kind: flows.PolicyKindDefault, Name: "ruleset-changed", Rule: -1}
		}
		if pd, ok := a.pendingFor(pending, pkt, d); ok {
			ref := a.policyRef(pd, a.staged)
			act := flows.Deny
			if pd.allow {
				act = flows.Allow
			}
			if a.stagedDecided(pd) || act != r.Action || ref != r.Policy {
				r.PendingPolicy, r.PendingAction = &ref, act
			}
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		// Nothing decided: the host to its own workloads, loopback.
		r := base
		r.Direction, r.Action = flows.Ingress, flows.Allow
		r.Policy = flows.PolicyRef{Kind: flows.PolicyKindDefault, Name: string(pkt.hook), Rule: -1}
		if e := a.eps[f.dst]; e == nil || !e.local {
			return nil
		}
		out = append(out, r)
	}
	return out
}

// pendingFor finds the pending decision of d's endpoint chain. When the
// pending ruleset dropped the packet before that chain (the source's
// egress would deny it), the destination's ingress is replayed on its
// own, as another node would see it.
func (a *Attributor) pendingFor(pending []decision, pkt packet, d decision) (decision, bool) {
	for _, p := range pending {
		if p.chain == d.chain {
			return p, true
		}
	}
	if a.prs == nil || d.chain == "" || !d.ingress || pkt.hook != policy.HookForward {
		return decision{}, false
	}
	pkt.iif = uplink
	again, _ := replay(a.prs, pkt)
	for _, p := range again {
		if p.chain == d.chain {
			return p, true
		}
	}
	return decision{}, false
}

// stagedDecided reports whether a staged policy decided d.
func (a *Attributor) stagedDecided(d decision) bool {
	if a.staged == nil || d.origin == nil {
		return false
	}
	_, ok := a.staged.Kinds[originID(d.origin)]
	return ok
}

func originID(o *policy.ChainOrigin) string {
	if o.Namespace != "" {
		return o.Kind + "/" + o.Namespace + "/" + o.Name
	}
	return o.Kind + "/" + o.Name
}

// policyRef names a decision; staged relabels the staged policies.
func (a *Attributor) policyRef(d decision, staged *Staged) flows.PolicyRef {
	if d.origin == nil {
		return flows.PolicyRef{Kind: flows.PolicyKindDefault, Name: d.defaultName, Rule: -1}
	}
	o := d.origin
	ref := flows.PolicyRef{Tier: o.Tier, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Rule: d.rule}
	if staged != nil {
		if k, ok := staged.Kinds[originID(o)]; ok {
			ref.Kind = k
		}
	}
	if o.Kind == "NetworkPolicy" && strings.HasPrefix(o.Name, api.K8sPolicyPrefix) {
		ref.Name = strings.TrimPrefix(o.Name, api.K8sPolicyPrefix)
		if ref.Kind == "NetworkPolicy" {
			ref.Kind = "KubernetesNetworkPolicy"
		}
	}
	return ref
}

// StagedFrom converts the staged policies of a view. A staged Kubernetes
// policy that does not translate is left out (validation refuses it).
func StagedFrom(nps []*api.StagedNetworkPolicy, gps []*api.StagedGlobalNetworkPolicy, kps []*api.StagedKubernetesNetworkPolicy) *Staged {
	if len(nps)+len(gps)+len(kps) == 0 {
		return nil
	}
	s := &Staged{Deleted: map[string]bool{}, Kinds: map[string]string{}}
	for _, sp := range nps {
		id := "NetworkPolicy/" + namespaceOr(sp.Namespace) + "/" + sp.Name
		if api.IsStagedDelete(sp.Spec.StagedAction) {
			s.Deleted[id] = true
			continue
		}
		np := sp.Enforced()
		np.Namespace = namespaceOr(np.Namespace)
		s.Policies = append(s.Policies, np)
		s.Kinds[id] = "StagedNetworkPolicy"
	}
	for _, sp := range gps {
		id := "GlobalNetworkPolicy/" + sp.Name
		if api.IsStagedDelete(sp.Spec.StagedAction) {
			s.Deleted[id] = true
			continue
		}
		s.GlobalPolicies = append(s.GlobalPolicies, sp.Enforced())
		s.Kinds[id] = "StagedGlobalNetworkPolicy"
	}
	for _, sp := range kps {
		np, err := sp.Enforced()
		if err != nil {
			continue
		}
		id := "NetworkPolicy/" + np.Namespace + "/" + np.Name
		if api.IsStagedDelete(sp.Spec.StagedAction) {
			s.Deleted[id] = true
			continue
		}
		s.Policies = append(s.Policies, np)
		s.Kinds[id] = "StagedKubernetesNetworkPolicy"
	}
	return s
}

func namespaceOr(ns string) string {
	if ns == "" {
		return api.DefaultNamespace
	}
	return ns
}
