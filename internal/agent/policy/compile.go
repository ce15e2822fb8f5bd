package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/api/selector"
)

// State is everything the policy of one host depends on.
type State struct {
	// Node is this host's name: endpoints whose spec.node equals it are local.
	Node string
	// Endpoints are all workload endpoints of the cluster: remote ones
	// only feed selector sets.
	Endpoints      []*api.WorkloadEndpoint
	HostEndpoints  []*api.HostEndpoint
	Profiles       []*api.Profile
	Policies       []*api.NetworkPolicy
	GlobalPolicies []*api.GlobalNetworkPolicy
	// Tiers are the stored Tier objects; the built-in tiers (default,
	// kube-admin, kube-baseline) exist without one.
	Tiers             []*api.Tier
	NetworkSets       []*api.NetworkSet
	GlobalNetworkSets []*api.GlobalNetworkSet
	Pools             []*api.IPPool
	// Namespaces carry the labels namespaceSelectors match; a namespace
	// without one has only its name labels (api.NamespaceLabels).
	Namespaces []*api.Namespace
	// Felix is the effective FelixConfiguration of this node.
	Felix api.FelixConfigurationSpec
	// NodeIPs are this host's addresses (used to check port mappings'
	// hostIP).
	NodeIPs []netip.Addr
	// DNS, when set, intercepts the local workloads' DNS for the agent's
	// forwarder, which learns the addresses of domain rules (domains.go).
	DNS *DNSPolicy
}

// DefaultInterfacePrefix is the prefix of the host side of every workload veth.
const DefaultInterfacePrefix = "tby"

// Endpoint-to-host actions (FelixConfiguration spec.defaultEndpointToHostAction).
const (
	EndpointToHostDrop   = "Drop"
	EndpointToHostAccept = "Accept"
	EndpointToHostReturn = "Return"
)

// DefaultFailsafeInbound and DefaultFailsafeOutbound are Calico's failsafe
// ports: host endpoint policy never blocks them.
var (
	DefaultFailsafeInbound = []api.ProtoPort{
		{Protocol: "tcp", Port: 22}, {Protocol: "udp", Port: 68}, {Protocol: "tcp", Port: 179},
		{Protocol: "tcp", Port: 2379}, {Protocol: "tcp", Port: 2380}, {Protocol: "tcp", Port: 5473},
		{Protocol: "tcp", Port: 6443}, {Protocol: "tcp", Port: 6666}, {Protocol: "tcp", Port: 6667},
	}
	DefaultFailsafeOutbound = []api.ProtoPort{
		{Protocol: "udp", Port: 53}, {Protocol: "udp", Port: 67}, {Protocol: "tcp", Port: 179},
		{Protocol: "tcp", Port: 2379}, {Protocol: "tcp", Port: 2380}, {Protocol: "tcp", Port: 5473},
		{Protocol: "tcp", Port: 6443}, {Protocol: "tcp", Port: 6666}, {Protocol: "tcp", Port: 6667},
	}
)

type compiler struct {
	state        *State
	profiles     map[string]*api.Profile
	selectors    map[string]*selector.Selector
	entities     []*entity
	local        []*endpoint
	hostEPs      []*hostEndpoint
	policies     []*policyInfo
	tiers        map[string]*tierInfo
	missingTiers map[string]*tierInfo // named by quarantined policies only
	sets         map[string]*Set
	sources      map[string]setSource // selector and named-port sets: what their elements come from
	memberCache  map[string][]*entity
	labelIndex   map[string]map[string][]*entity // label key → value → entities (see labelled)
	entCache     *entityCache                    // nil: build every entity
	chains       map[string]*Chain
	maps         map[string]*Map
	warnings     []string
	ifPrefixes   []string
	profRules    map[string]*[2][]*parsedRule // profile name → parsed ingress, egress; nil: quarantined
	quarantine   []Quarantine
	nsLabels     map[string]map[string]string // namespace → labels namespaceSelectors see
	origins      map[string]ChainOrigin       // policy and profile chains: what they come from (origins.go)
}

func (c *compiler) warnf(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

func (c *compiler) addChain(ch *Chain) {
	c.chains[ch.Name] = ch
}

// Compile computes the ruleset of s.Node. It is pure and deterministic. An
// invalid object (a selector that does not parse, a rule field with a bad
// value, an address that is not one) fails the whole compile with an error
// naming the object, the field and the value: the caller keeps the ruleset
// it has.
func Compile(s *State) (*Ruleset, error) {
	rs, _, err := compileState(s)
	return rs, err
}

// compileState is Compile, also returning the compiler, whose entities,
// profiles and set sources the incremental Engine indexes.
func compileState(s *State) (*Ruleset, *compiler, error) {
	return compileCached(s, nil)
}

// compileCached is compileState reusing (and refilling) an entity cache.
func compileCached(s *State, ec *entityCache) (*Ruleset, *compiler, error) {
	if s == nil {
		return nil, nil, fmt.Errorf("compile policy: no state")
	}
	if s.Node == "" {
		return nil, nil, fmt.Errorf("compile policy: state has no node name")
	}
	c := &compiler{
		state:       s,
		profiles:    map[string]*api.Profile{},
		selectors:   map[string]*selector.Selector{},
		sets:        map[string]*Set{},
		sources:     map[string]setSource{},
		memberCache: map[string][]*entity{},
		profRules:   map[string]*[2][]*parsedRule{},
		chains:      map[string]*Chain{},
		maps:        map[string]*Map{},
		entCache:    ec,
	}
	if ec != nil {
		ec.start(s)
	}
	if err := c.compile(); err != nil {
		return nil, nil, fmt.Errorf("compile policy for node %s: %w", s.Node, err)
	}
	slices.SortFunc(c.quarantine, func(a, b Quarantine) int { return strings.Compare(a.ID(), b.ID()) })
	rs := &Ruleset{Warnings: c.warnings, Quarantined: c.quarantine, Origins: c.origins}
	for _, k := range slices.Sorted(maps.Keys(c.sets)) {
		rs.Sets = append(rs.Sets, c.sets[k])
	}
	for _, k := range slices.Sorted(maps.Keys(c.maps)) {
		rs.Maps = append(rs.Maps, c.maps[k])
	}
	for _, k := range slices.Sorted(maps.Keys(c.chains)) {
		rs.Chains = append(rs.Chains, c.chains[k])
	}
	return rs, c, nil
}

func (c *compiler) compile() error {
	for i, p := range c.state.Profiles {
		if p == nil {
			return fmt.Errorf("profiles[%d] is nil", i)
		}
		c.profiles[p.Name] = p
		in, out, err := c.parseRules("Profile "+p.Name, "", chainName("pri-", p.Name), chainName("pro-", p.Name), p.Spec.Ingress, p.Spec.Egress)
		if err != nil {
			// Quarantined: the profile allows nothing.
			c.quarantine = append(c.quarantine, Quarantine{Kind: "Profile", Name: p.Name, Reason: err.Error()})
			c.profRules[p.Name] = nil
			continue
		}
		c.profRules[p.Name] = &[2][]*parsedRule{in, out}
	}
	prefix := c.state.Felix.InterfacePrefix
	if prefix == "" {
		prefix = DefaultInterfacePrefix
	}
	for _, p := range strings.Split(prefix, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.ifPrefixes = append(c.ifPrefixes, p)
		}
	}
	if len(c.ifPrefixes) == 0 {
		c.warnf("FelixConfiguration spec.interfacePrefix %q names no prefix; using %q", prefix, DefaultInterfacePrefix)
		c.ifPrefixes = []string{DefaultInterfacePrefix}
	}
	toHost, err := endpointToHostAction(c.state.Felix.DefaultEndpointToHostAction)
	if err != nil {
		c.warnf("%v; using Drop", err)
		toHost = EndpointToHostDrop
	}
	if err := c.loadEntities(); err != nil {
		return err
	}
	for _, e := range c.local {
		if !c.hasPrefix(e.IfName) {
			c.warnf("WorkloadEndpoint %s/%s: interface %q does not start with an interface prefix (%s); its traffic is not policed",
				e.Namespace, e.Name, e.IfName, strings.Join(c.ifPrefixes, ","))
		}
	}
	if err := c.loadTiers(); err != nil {
		return err
	}
	if err := c.loadPolicies(); err != nil {
		return err
	}
	c.workloadChains()
	c.hostEndpointChains()
	c.baseChains(toHost)
	c.dnsRedirectChains()
	return c.natChains()
}

func (c *compiler) hasPrefix(ifName string) bool {
	for _, p := range c.ifPrefixes {
		if strings.HasPrefix(ifName, p) {
			return true
		}
	}
	return false
}

func endpointToHostAction(s string) (string, error) {
	switch strings.ToLower(s) {
	case "", "drop":
		return EndpointToHostDrop, nil
	case "accept":
		return EndpointToHostAccept, nil
	case "return":
		return EndpointToHostReturn, nil
	}
	return "", fmt.Errorf("FelixConfiguration spec.defaultEndpointToHostAction: %q is not Drop, Accept or Return", s)
}

// selectsWorkload reports whether a policy applies to a local workload.
func (p *policyInfo) selectsWorkload(e *endpoint) bool {
	if p.global {
		if p.hostOnly {
			return false
		}
		if p.nsSel != nil && !p.nsSel.Evaluate(e.NamespaceLabels) {
			return false
		}
	} else if p.namespace != e.Namespace {
		return false
	}
	if p.saSel != nil && (e.ServiceAccount == "" || !p.saSel.Evaluate(map[string]string{LabelName: e.ServiceAccount})) {
		return false
	}
	return p.sel == nil || p.sel.Evaluate(e.Labels)
}

// selectsHost reports whether a policy applies to a local host endpoint:
// only global policies without a namespace selector (or with global()) do.
func (p *policyInfo) selectsHost(h *hostEndpoint) bool {
	if !p.global || p.nsSel != nil || p.saSel != nil {
		return false
	}
	return p.sel == nil || p.sel.Evaluate(h.Labels)
}

// policyChain emits (once) the chain of one direction of a policy.
func (c *compiler) policyChain(p *policyInfo, ingress bool) string {
	name, rules := p.chainOut, p.parsedOut
	if ingress {
		name, rules = p.chainIn, p.parsedIn
	}
	c.noteOrigin(name, p.origin(ingress))
	if p.quarantined != "" {
		c.addChain(&Chain{Name: name, Rules: quarantinedChain})
		return name
	}
	c.emitChain(name, rules)
	return name
}

// profileChain emits (once) the chain of one direction of a profile.
func (c *compiler) profileChain(pr *api.Profile, ingress bool) string {
	name := chainName("pro-", pr.Name)
	if ingress {
		name = chainName("pri-", pr.Name)
	}
	c.noteOrigin(name, ChainOrigin{Kind: "Profile", Name: pr.Name, Ingress: ingress})
	parsed := c.profRules[pr.Name]
	if parsed == nil {
		c.addChain(&Chain{Name: name, Rules: quarantinedChain})
		return name
	}
	rules := parsed[1]
	if ingress {
		rules = parsed[0]
	}
	c.emitChain(name, rules)
	return name
}

func (c *compiler) emitChain(name string, rules []*parsedRule) {
	if _, ok := c.chains[name]; ok {
		return
	}
	ch := &Chain{Name: name}
	var idx []int
	for i, pr := range rules {
		ch.Rules = append(ch.Rules, c.emitRule(pr)...)
		for len(idx) < len(ch.Rules) {
			idx = append(idx, i)
		}
	}
	c.noteRuleOrigins(name, idx)
	c.addChain(ch)
}

func logPrefix(chain string) string {
	p := "tabby " + chain + ": "
	if len(p) > 127 {
		p = p[:127]
	}
	return p
}

var (
	clearMarks     = Rule{Stmts: []Stmt{SetMark{And: ^markBits}}}
	returnIfAccept = Rule{Matches: []Match{Mark{Mask: MarkAccept, Value: MarkAccept}}, Verdict: Verdict{Kind: Return}}
	passClear      = Mark{Mask: MarkPass, Value: 0}
	clearPass      = Rule{Stmts: []Stmt{SetMark{And: ^MarkPass}}}
	dropInvalid    = Rule{Matches: []Match{CtState{State: CtInvalid}}, Verdict: Verdict{Kind: Drop}}
)

// endpointRules is the body shared by workload and host endpoint chains:
// the applicable policies tier by tier (tierRules), then (when no policy
// applies, or the last tier passed the packet) the profiles, then drop.
// Allowed packets return with MarkAccept set.
func (c *compiler) endpointRules(pols []*policyInfo, ingress bool, profiles []string) []Rule {
	var rules []Rule
	for len(pols) > 0 {
		n := 1
		for n < len(pols) && pols[n].tier == pols[0].tier {
			n++
		}
		tier, ended := c.tierRules(pols[:n], ingress, n < len(pols))
		rules = append(rules, tier...)
		if ended {
			return rules
		}
		pols = pols[n:]
	}
	for _, name := range profiles {
		pr, ok := c.profiles[name]
		if !ok {
			continue
		}
		ch := c.profileChain(pr, ingress)
		rules = append(rules, Rule{Verdict: Verdict{Kind: Jump, Chain: ch}}, returnIfAccept)
	}
	return append(rules, Rule{Verdict: Verdict{Kind: Drop}})
}

// workloadChains builds the ingress (tw-) and egress (fw-) chain of every
// local workload, the dispatch maps and the anti-spoofing sets.
func (c *compiler) workloadChains() {
	fromWL := &Map{Name: MapFromWorkload, Type: MapIfName, Comment: "workload interface to its egress chain"}
	toWL := &Map{Name: MapToWorkload, Type: MapIfName, Comment: "workload interface to its ingress chain"}
	var src4, src6 []Element
	// Endpoints with the same policies and profiles get the same body:
	// build it once and share the slice (the flat transforms then work on
	// it once too).
	bodies := map[string][]Rule{}
	var key []byte
	for _, e := range c.local {
		var in, out []*policyInfo
		for _, p := range c.policies {
			if (p.typeIn || p.typeOut) && p.selectsWorkload(e) {
				if p.typeIn {
					in = append(in, p)
				}
				if p.typeOut {
					out = append(out, p)
				}
			}
		}
		for _, dir := range []struct {
			ingress bool
			prefix  string
			pols    []*policyInfo
			m       *Map
		}{{true, "tw-", in, toWL}, {false, "fw-", out, fromWL}} {
			key = append(key[:0], dir.prefix...)
			for _, p := range dir.pols {
				key = fmt.Appendf(key, "%p,", p)
			}
			key = append(key, '|')
			key = append(key, strings.Join(e.Profiles, ",")...)
			body, ok := bodies[string(key)]
			if !ok {
				body = c.endpointRules(dir.pols, dir.ingress, e.Profiles)
				bodies[string(key)] = body
			}
			name := dir.prefix + e.IfName
			c.addChain(&Chain{Name: name, Rules: body})
			dir.m.Elements = append(dir.m.Elements, MapElement{Key: Element{IfName: e.IfName}, Verdict: Verdict{Kind: Goto, Chain: name}})
		}
		for _, a := range e.Addrs {
			el := Element{IfName: e.IfName, Addr: a.Addr()}
			if a.Addr().Is4() {
				src4 = append(src4, el)
			} else {
				src6 = append(src6, el)
			}
		}
	}
	c.maps[fromWL.Name], c.maps[toWL.Name] = fromWL, toWL
	slices.SortFunc(src4, Element.Compare)
	slices.SortFunc(src6, Element.Compare)
	c.addSet(SetWorkloadSrc4, SetIfAddr4, "addresses of local workloads, by interface", func() []Element { return src4 })
	c.addSet(SetWorkloadSrc6, SetIfAddr6, "addresses of local workloads, by interface", func() []Element { return src6 })
}

// hostEndpointChains builds the ingress (fh-) and egress (th-) chains of
// this host's host endpoints, with the failsafe chains in front.
func (c *compiler) hostEndpointChains() {
	in := c.failsafeRules("FelixConfiguration spec.failsafeInboundHostPorts", c.state.Felix.FailsafeInboundHostPorts, DefaultFailsafeInbound, Src)
	out := c.failsafeRules("FelixConfiguration spec.failsafeOutboundHostPorts", c.state.Felix.FailsafeOutboundHostPorts, DefaultFailsafeOutbound, Dst)
	fromHEP := &Map{Name: MapFromHost, Type: MapIfName, Comment: "host endpoint interface to its ingress chain"}
	toHEP := &Map{Name: MapToHost, Type: MapIfName, Comment: "host endpoint interface to its egress chain"}
	c.maps[fromHEP.Name], c.maps[toHEP.Name] = fromHEP, toHEP
	if len(c.hostEPs) == 0 {
		return
	}
	c.addChain(&Chain{Name: "failsafe-in", Rules: in})
	c.addChain(&Chain{Name: "failsafe-out", Rules: out})
	for _, h := range c.hostEPs {
		var pin, pout []*policyInfo
		for _, p := range c.policies {
			if p.selectsHost(h) {
				if p.typeIn {
					pin = append(pin, p)
				}
				if p.typeOut {
					pout = append(pout, p)
				}
			}
		}
		for _, dir := range []struct {
			ingress  bool
			prefix   string
			failsafe string
			pols     []*policyInfo
			m        *Map
		}{{true, "fh-", "failsafe-in", pin, fromHEP}, {false, "th-", "failsafe-out", pout, toHEP}} {
			body := c.endpointRules(dir.pols, dir.ingress, h.Profiles)
			name := chainName(dir.prefix, h.Name)
			rules := append([]Rule{dropInvalid, clearMarks, {Verdict: Verdict{Kind: Jump, Chain: dir.failsafe}}}, body...)
			c.addChain(&Chain{Name: name, Rules: rules})
			if h.IfName != "*" {
				dir.m.Elements = append(dir.m.Elements, MapElement{Key: Element{IfName: h.IfName}, Verdict: Verdict{Kind: Goto, Chain: name}})
			}
		}
	}
	slices.SortFunc(fromHEP.Elements, func(a, b MapElement) int { return a.Key.Compare(b.Key) })
	slices.SortFunc(toHEP.Elements, func(a, b MapElement) int { return a.Key.Compare(b.Key) })
}

// wildcardHEP returns the host endpoint with interfaceName "*", if any.
func (c *compiler) wildcardHEP() *hostEndpoint {
	for _, h := range c.hostEPs {
		if h.IfName == "*" {
			return h
		}
	}
	return nil
}

// failsafeRules accepts the failsafe ports; remote is the side whose net a
// ProtoPort may restrict (the source inbound, the destination outbound). An
// entry that does not parse opens nothing (a warning says so).
func (c *compiler) failsafeRules(field string, configured *[]api.ProtoPort, dflt []api.ProtoPort, remote Direction) []Rule {
	pps := dflt
	if configured != nil {
		pps = *configured
	}
	var rules []Rule
	for i, pp := range pps {
		var proto uint8
		switch strings.ToLower(pp.Protocol) {
		case "tcp":
			proto = 6
		case "udp":
			proto = 17
		case "sctp":
			proto = 132
		default:
			c.warnf("%s[%d].protocol: %q is not tcp, udp or sctp; the entry is ignored", field, i, pp.Protocol)
			continue
		}
		r := Rule{Matches: []Match{L4Proto{Proto: proto}, Port{Dir: Dst, Min: pp.Port, Max: pp.Port}}, Verdict: Verdict{Kind: Accept}}
		if pp.Net != "" {
			n, err := parseNet(pp.Net)
			if err != nil {
				c.warnf("%s[%d].net: %v; the entry is ignored", field, i, err)
				continue
			}
			fam := addrFamily(n.Addr())
			r.Matches = append([]Match{NFProto{Family: fam}}, append(r.Matches, AddrPrefix{Dir: remote, Prefix: n})...)
		}
		rules = append(rules, r)
	}
	return rules
}

var (
	acceptEstablished = Rule{Matches: []Match{CtState{State: CtEstablished | CtRelated}}, Verdict: Verdict{Kind: Accept}}
	jumpFromWL        = Rule{Verdict: Verdict{Kind: VMap, Map: MapFromWorkload, Key: KeyIIfName}}
	jumpToWL          = Rule{Verdict: Verdict{Kind: VMap, Map: MapToWorkload, Key: KeyOIfName}}
)

func hook(t ChainType, h HookPoint, prio int32) *Hook { return &Hook{Type: t, Hook: h, Priority: prio} }

// baseChains builds the chains attached to netfilter hooks and the static
// chains they use.
func (c *compiler) baseChains(toHost string) {
	prefixRules := func(out bool, v Verdict) []Rule {
		var rs []Rule
		for _, p := range c.ifPrefixes {
			rs = append(rs, Rule{Matches: []Match{IfName{Out: out, Name: p, Prefix: true}}, Verdict: v})
		}
		return rs
	}
	drop := Verdict{Kind: Drop}

	// Anti-spoofing, before conntrack: a workload may only send from its
	// own addresses (and IPv6 link-local ones, for neighbour discovery).
	c.addChain(&Chain{Name: "raw-prerouting", Hook: hook(TypeFilter, HookPrerouting, PriorityRaw),
		Rules: prefixRules(false, Verdict{Kind: Jump, Chain: "anti-spoof"})})
	c.addChain(&Chain{Name: "anti-spoof", Rules: []Rule{
		{Matches: []Match{NFProto{Family: 4}, IfAddrSet{Family: 4, Set: SetWorkloadSrc4}}, Verdict: Verdict{Kind: Return}},
		{Matches: []Match{NFProto{Family: 6}, AddrPrefix{Dir: Src, Prefix: netip.MustParsePrefix("fe80::/10")}}, Verdict: Verdict{Kind: Return}},
		{Matches: []Match{NFProto{Family: 6}, IfAddrSet{Family: 6, Set: SetWorkloadSrc6}}, Verdict: Verdict{Kind: Return}},
		{Verdict: drop},
	}})

	// Forwarded traffic: the egress policy of the source workload, then
	// the ingress policy of the destination workload (an allowed packet
	// returns from each). Workload interfaces this host does not know
	// (yet) are dropped by the dispatch chains.
	fwd := []Rule{acceptEstablished}
	fwd = append(fwd, prefixRules(false, Verdict{Kind: Jump, Chain: "from-wl"})...)
	fwd = append(fwd, prefixRules(true, Verdict{Kind: Jump, Chain: "to-wl"})...)
	c.addChain(&Chain{Name: "forward", Hook: hook(TypeFilter, HookForward, PriorityFilter), Rules: fwd})
	c.addChain(&Chain{Name: "from-wl", Rules: []Rule{dropInvalid, clearMarks, jumpFromWL, {Verdict: drop}}})
	c.addChain(&Chain{Name: "to-wl", Rules: []Rule{dropInvalid, clearMarks, jumpToWL, {Verdict: drop}}})

	// Traffic to the host.
	in := []Rule{acceptEstablished}
	in = append(in, prefixRules(false, Verdict{Kind: Jump, Chain: "wl-to-host"})...)
	in = append(in, Rule{Matches: []Match{IfName{Name: "lo"}}, Verdict: Verdict{Kind: Accept}})
	in = append(in, c.hostDispatch(false)...)
	c.addChain(&Chain{Name: "input", Hook: hook(TypeFilter, HookInput, PriorityFilter), Rules: in})

	wl := []Rule{
		// Neighbour and router discovery (Calico allows them before
		// egress policy so no policy can cut a workload off its router).
		{Matches: []Match{NFProto{Family: 6}, L4Proto{Proto: protoICMPv6}, ICMPTypes{Family: 6, Min: 130, Max: 133}}, Verdict: Verdict{Kind: Accept}},
		{Matches: []Match{NFProto{Family: 6}, L4Proto{Proto: protoICMPv6}, ICMPTypes{Family: 6, Min: 135, Max: 136}}, Verdict: Verdict{Kind: Accept}},
		{Verdict: Verdict{Kind: Jump, Chain: "from-wl"}},
	}
	wl = slices.Concat(c.dnsAccept(), wl)
	switch toHost {
	case EndpointToHostDrop:
		wl = append(wl, Rule{Verdict: drop})
	case EndpointToHostAccept:
		wl = append(wl, Rule{Verdict: Verdict{Kind: Accept}})
	case EndpointToHostReturn:
		wl = append(wl, Rule{Verdict: Verdict{Kind: Return}})
	}
	c.addChain(&Chain{Name: "wl-to-host", Rules: wl})

	// Traffic from the host. Like Calico, the host may reach its own
	// workloads (their ingress policy is not applied to it).
	out := []Rule{acceptEstablished}
	out = append(out, prefixRules(true, Verdict{Kind: Accept})...)
	out = append(out, Rule{Matches: []Match{IfName{Out: true, Name: "lo"}}, Verdict: Verdict{Kind: Accept}})
	out = append(out, c.hostDispatch(true)...)
	c.addChain(&Chain{Name: "output", Hook: hook(TypeFilter, HookOutput, PriorityFilter), Rules: out})
}

// hostDispatch sends traffic of host endpoint interfaces to their chains;
// the wildcard host endpoint takes every other interface.
func (c *compiler) hostDispatch(out bool) []Rule {
	if len(c.hostEPs) == 0 {
		return nil
	}
	m, key, prefix := MapFromHost, KeyIIfName, "fh-"
	if out {
		m, key, prefix = MapToHost, KeyOIfName, "th-"
	}
	rules := []Rule{{Verdict: Verdict{Kind: VMap, Map: m, Key: key}}}
	if w := c.wildcardHEP(); w != nil {
		rules = append(rules, Rule{Verdict: Verdict{Kind: Goto, Chain: chainName(prefix, w.Name)}})
	}
	return rules
}
