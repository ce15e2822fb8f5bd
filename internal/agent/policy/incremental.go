package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
)

// Engine keeps one host's ruleset up to date: Full compiles a whole state
// (Compile, then Flatten unless the engine is for the reference form) and
// indexes it; Update then turns changes of remote endpoints and network
// sets into element changes of the sets they feed, without compiling.
//
// The index: every set whose elements come from entities (a selector set
// s4-/s6-, a named-port set np4-/np6-) keeps its source predicate and a
// count of every element the matching entities contribute; every union
// set (u4-/u6-) knows its members. A change re-evaluates each indexed
// predicate against the entity as it was and as it is, adjusts the
// counts, and rebuilds the elements of only the sets whose counts crossed
// zero, then the unions of those. Chains, maps and every other set are
// shared with the previous Ruleset, so the driver's diff finds the element
// changes and nothing else.
//
// What a remote endpoint or network set can change is exactly that: the
// compiler reads remote entities only to fill selector and named-port
// sets. Everything else (local endpoints, policies, profiles, tiers,
// pools, host endpoints, Felix settings) changes chains and goes through
// Full.
type Engine struct {
	flat     bool
	policies int       // PolicyCount of the last full compile
	c        *compiler // the last full compile: node, profiles (entity labels)
	rs       *Ruleset  // the last result

	sets     map[string]*indexedSet // entity-fed sets, programmed or union members
	ordered  []*indexedSet          // the same, by name: predicates evaluate in a fixed order
	unions   map[string]*unionSet   // union sets, programmed or members of one
	unionsOf map[string][]string    // set → the union sets it is a direct member of
	fixed    map[string][]Element   // other union members the table does not hold
	ents     map[string]*entity     // entity id → the entity as the index counted it
	locals   map[string]bool        // ids of this node's workload endpoints
	local    []*endpoint            // this node's workload endpoints, as the last full compile read them
	hosts    []*hostEndpoint        // this node's host endpoints, the same
	entities entityCache            // what Full reuses of the last full compile's entities

	// For local endpoint adds (flat form only): the policies in the
	// compiler's order, without their parsed rules (inert policy changes
	// keep it current), each local endpoint's body key and its normalized
	// form, by interface and by id.
	pols     []*policyInfo
	bodyKey  map[string]string    // interface → policy lists and profiles
	localIDs map[string]*endpoint // entity id → the local endpoint
	ifPrefix []string
}

// indexedSet is an entity-fed set: its source, each element's count (how
// many entity contributions hold it) and its current elements.
type indexedSet struct {
	name   string
	typ    SetType
	src    setSource
	counts map[Element]int
	wide   int // counted prefixes that are not single addresses
	elems  []Element
}

// unionSet is a union of sets and prefixes (see Set.Members).
type unionSet struct {
	members []string
	elems   []Element
}

// Change is one delta of the datastore: Old is the object before (nil: it
// was created), New after (nil: deleted).
type Change struct {
	Old, New api.Resource
}

// NewEngine returns an engine for the flat form (flat) or the reference
// form (Compile's output as it is).
func NewEngine(flat bool) *Engine { return &Engine{flat: flat} }

// Ruleset is the engine's current ruleset (nil before the first Full).
func (e *Engine) Ruleset() *Ruleset { return e.rs }

// PolicyCount is Compile's PolicyCount of the last full compile (Update
// changes no policy).
func (e *Engine) PolicyCount() int { return e.policies }

// Full compiles s and re-indexes. On error the engine keeps its state.
func (e *Engine) Full(s *State) (*Ruleset, error) {
	rs, c, err := compileCached(s, &e.entities)
	if err != nil {
		// The cache may hold entities of this failed compile: start over.
		e.entities = entityCache{}
		return nil, err
	}
	c.entCache = nil // Update builds its entities afresh
	all, out := rs, rs
	if e.flat {
		all = flattenUnpruned(rs)
		out = Prune(all)
	}
	e.index(c, rs, all, out)
	e.policies = rs.PolicyCount()
	return out, nil
}

// index builds the engine's index of a full compile: compiled is
// Compile's output (it has every selector set, also those Flatten merged
// into unions), all every set the transforms made (unions a later union
// absorbed too), out what is programmed.
func (e *Engine) index(c *compiler, compiled, all, out *Ruleset) {
	e.c, e.rs = c, out
	e.sets, e.unions, e.unionsOf, e.fixed = map[string]*indexedSet{}, map[string]*unionSet{}, map[string][]string{}, map[string][]Element{}
	need := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		if need[name] {
			return
		}
		need[name] = true
		s := all.Set(name)
		if s == nil || len(s.Members) == 0 {
			return
		}
		e.unions[name] = &unionSet{members: s.Members, elems: s.Elements}
		for _, m := range s.Members {
			if ref, ok := strings.CutPrefix(m, "@"); ok {
				e.unionsOf[ref] = append(e.unionsOf[ref], name)
				visit(ref)
			}
		}
	}
	for _, s := range out.Sets {
		visit(s.Name)
	}
	e.ordered = e.ordered[:0]
	for name := range need {
		if _, ok := e.unions[name]; ok {
			continue
		}
		src, ok := c.sources[name]
		set := compiled.Set(name)
		switch {
		case ok && set != nil:
			is := &indexedSet{name: name, typ: set.Type, src: src, counts: map[Element]int{}, elems: set.Elements}
			for _, ent := range c.members(src.pred) {
				is.count(src.contribution(ent), 1)
			}
			e.sets[name] = is
			e.ordered = append(e.ordered, is)
		case out.Set(name) == nil:
			// A fixed set only a union reads (Flatten left it out).
			if s := all.Set(name); s != nil {
				e.fixed[name] = s.Elements
			}
		}
	}
	slices.SortFunc(e.ordered, func(a, b *indexedSet) int { return strings.Compare(a.name, b.name) })
	e.ents = make(map[string]*entity, len(c.entities))
	for _, ent := range c.entities {
		e.ents[ent.id] = ent
	}
	e.locals = map[string]bool{}
	for _, w := range c.state.Endpoints {
		if w != nil && w.Spec.Node == c.state.Node {
			e.locals["WorkloadEndpoint "+namespaceOf(&w.ObjectMeta)+"/"+w.Name] = true
		}
	}
	e.local, e.hosts = c.local, c.hostEPs
	e.pols, e.ifPrefix = c.policies, c.ifPrefixes
	for _, p := range e.pols {
		p.parsedIn, p.parsedOut = nil, nil
	}
	e.bodyKey, e.localIDs = map[string]string{}, map[string]*endpoint{}
	for _, l := range c.local {
		e.bodyKey[l.IfName] = e.keyOf(l)
		e.localIDs["WorkloadEndpoint "+l.Namespace+"/"+l.Name] = l
	}
	// What the engine keeps of the compiler builds entities (profiles,
	// namespace labels) and parses policies (tiers, the selector cache).
	// Drop the rest — the entity lists (the index holds the entities),
	// every policy's parsed rules, the emitted chains and sets — so an idle
	// agent does not keep a second copy of its table and of every policy
	// of the cluster.
	c.entities, c.memberCache, c.labelIndex, c.local, c.hostEPs = nil, nil, nil, nil, nil
	c.policies, c.chains, c.sets, c.maps, c.sources, c.profRules, c.quarantine = nil, nil, nil, nil, nil, nil, nil
	c.state = &State{Node: c.state.Node}
}

// count adds n (±1) to each element's count and reports the elements whose
// count crossed zero.
func (is *indexedSet) count(elems []Element, n int) (crossed []Element) {
	for _, el := range elems {
		before := is.counts[el]
		after := before + n
		if after == 0 {
			delete(is.counts, el)
		} else {
			is.counts[el] = after
		}
		if before == 0 || after == 0 {
			crossed = append(crossed, el)
			if is.typ.Interval() && !el.Prefix.IsSingleIP() {
				is.wide += n
			}
		}
	}
	return crossed
}

// Update applies changes of remote workload endpoints, network sets,
// global network sets, and of policies that select no endpoint of this
// node before or after the change, and returns the new ruleset. ok is
// false, and nothing is changed, when a change is of anything else (a
// local endpoint, a policy that selects one here, a policy that does not
// compile, a profile, a tier...), or before the first Full: the caller
// then compiles in full.
func (e *Engine) Update(changes []Change) (rs *Ruleset, ok bool) {
	if e.rs == nil {
		return nil, false
	}
	type step struct {
		id  string
		new *entity // nil: gone
	}
	steps := make([]step, 0, len(changes))
	var inert []Change
	var adds []localAdd
	for _, ch := range changes {
		if ok, isPolicy := e.inertPolicy(ch); isPolicy {
			if !ok {
				return nil, false
			}
			inert = append(inert, ch)
			continue
		}
		if isLocal(ch.New, e.c.state.Node) || isLocal(ch.Old, e.c.state.Node) {
			a, ok := e.localChange(ch, adds)
			if !ok {
				return nil, false
			}
			steps = append(steps, step{a.id, a.ent})
			if a.ep != nil {
				adds = append(adds, a)
			}
			continue
		}
		id, ent, ok := e.entityOf(ch)
		if !ok {
			return nil, false
		}
		steps = append(steps, step{id, ent})
	}
	if len(inert) > 0 && len(adds) > 0 {
		// Whether a policy selects an endpoint added in the same batch
		// (or the add needs the policy) is the full compile's to say.
		return nil, false
	}
	for _, ch := range inert {
		e.notePolicy(ch)
	}
	crossed := map[*indexedSet][]Element{}
	for _, st := range steps {
		old := e.ents[st.id]
		for _, is := range e.ordered {
			var x []Element
			if old != nil {
				x = is.count(is.src.contribution(old), -1)
			}
			if st.new != nil {
				x = append(x, is.count(is.src.contribution(st.new), 1)...)
			}
			if len(x) > 0 {
				crossed[is] = append(crossed[is], x...)
			}
		}
		if st.new == nil {
			delete(e.ents, st.id)
		} else {
			e.ents[st.id] = st.new
		}
	}
	e.rs = e.rebuild(crossed)
	if len(adds) > 0 {
		e.rs = e.addLocal(adds)
	}
	return e.rs, true
}

// entityOf is the id of the entity a change is about and the entity it
// becomes (nil: deleted); ok is false for a change Update does not handle.
func (e *Engine) entityOf(ch Change) (id string, ent *entity, ok bool) {
	obj := ch.New
	if obj == nil {
		obj = ch.Old
	}
	switch o := obj.(type) {
	case *api.WorkloadEndpoint:
		id = "WorkloadEndpoint " + namespaceOf(&o.ObjectMeta) + "/" + o.Name
		if e.locals[id] {
			return "", nil, false
		}
		if w, _ := ch.New.(*api.WorkloadEndpoint); w != nil {
			ent = e.c.workloadEntity(w)
		}
	case *api.NetworkSet:
		id = "NetworkSet " + namespaceOf(&o.ObjectMeta) + "/" + o.Name
		if n, _ := ch.New.(*api.NetworkSet); n != nil {
			ent = e.c.networkSetEntity(n)
		}
	case *api.GlobalNetworkSet:
		id = "GlobalNetworkSet " + o.Name
		if n, _ := ch.New.(*api.GlobalNetworkSet); n != nil {
			ent = e.c.globalNetworkSetEntity(n)
		}
	default:
		return "", nil, false
	}
	// Warnings about the entity (a bad address) are the full compile's to
	// report; the next one does.
	e.c.warnings = nil
	return id, ent, true
}

// inertPolicy reports whether a change is of a NetworkPolicy or
// GlobalNetworkPolicy (isPolicy) and, if so, whether it leaves this node's
// ruleset as it is (inert): the policy compiles, before and after, and
// selects none of this node's workload or host endpoints. The compiler
// emits chains and sets only for the policies an endpoint here applies,
// so such a policy changes nothing on this node; felix's active-rules
// calculator makes the same cut. Deciding it evaluates the policy's
// selector against the local endpoints only, whatever the size of the
// cluster. A policy that selects an endpoint here (or is quarantined,
// which is listed on every node) goes through Full.
func (e *Engine) inertPolicy(ch Change) (inert, isPolicy bool) {
	for _, r := range []api.Resource{ch.Old, ch.New} {
		if r == nil || reflect.ValueOf(r).IsNil() {
			continue
		}
		p, sp, extra := e.c.policyOf(r)
		if p == nil {
			return false, false
		}
		isPolicy = true
		if err := e.c.parsePolicy(p, sp, extra); err != nil {
			return false, true
		}
		if !p.typeIn && !p.typeOut {
			continue
		}
		for _, w := range e.local {
			if p.selectsWorkload(w) {
				return false, true
			}
		}
		for _, h := range e.hosts {
			if p.selectsHost(h) {
				return false, true
			}
		}
	}
	return isPolicy, isPolicy
}

func isLocal(r api.Resource, node string) bool {
	w, ok := r.(*api.WorkloadEndpoint)
	return ok && w != nil && w.Spec.Node == node
}

// rebuild recomputes the elements of the sets whose counts crossed zero
// and of the unions containing them, and returns the new ruleset: the old
// one with those sets replaced.
func (e *Engine) rebuild(crossed map[*indexedSet][]Element) *Ruleset {
	if len(crossed) == 0 {
		return e.rs
	}
	changed := map[string]bool{}
	for is, els := range crossed {
		if is.applyCrossed(els) {
			changed[is.name] = true
		}
	}
	// Unions of changed sets, transitively (a union may be a member of
	// another union).
	var dirty []string
	seen := map[string]bool{}
	var up func(string)
	up = func(name string) {
		for _, u := range e.unionsOf[name] {
			if !seen[u] {
				seen[u] = true
				dirty = append(dirty, u)
				up(u)
			}
		}
	}
	for name := range changed {
		up(name)
	}
	if len(changed) == 0 {
		return e.rs
	}
	out := *e.rs
	out.Sets = slices.Clone(e.rs.Sets)
	replace := func(name string, elems []Element) {
		i, found := slices.BinarySearchFunc(out.Sets, name, func(s *Set, n string) int { return strings.Compare(s.Name, n) })
		if !found {
			return
		}
		s := *out.Sets[i]
		s.Elements = elems
		out.Sets[i] = &s
	}
	for name := range changed {
		replace(name, e.sets[name].elems)
	}
	done := map[string]bool{}
	var union func(name string) []Element
	union = func(name string) []Element {
		u := e.unions[name]
		if done[name] {
			return u.elems
		}
		var nets []netip.Prefix
		for _, m := range u.members {
			ref, isSet := strings.CutPrefix(m, "@")
			if !isSet {
				if p, err := netip.ParsePrefix(m); err == nil {
					nets = append(nets, p)
				}
				continue
			}
			els := e.elements(&out, ref)
			if seen[ref] {
				els = union(ref)
			}
			for _, el := range els {
				nets = append(nets, el.Prefix)
			}
		}
		u.elems = prefixElements(nets)
		done[name] = true
		return u.elems
	}
	for _, u := range dirty {
		replace(u, union(u))
	}
	return &out
}

// elements are a set's current elements: an indexed set's or a union's
// own (also when Flatten left it out of the table), otherwise the fixed
// elements of the table or of the last full compile.
func (e *Engine) elements(rs *Ruleset, name string) []Element {
	if is, ok := e.sets[name]; ok {
		return is.elems
	}
	if u, ok := e.unions[name]; ok {
		return u.elems
	}
	if s := rs.Set(name); s != nil {
		return s.Elements
	}
	return e.fixed[name]
}

// applyCrossed brings elems up to date after the elements in crossed had
// their counts cross zero, and reports whether they changed. While the set
// holds single addresses only, each crossing is one insert or delete;
// otherwise (an interval set with a prefix that may contain others) the
// elements are rebuilt from the counts.
func (is *indexedSet) applyCrossed(crossed []Element) bool {
	if is.wide > 0 || slices.ContainsFunc(crossed, func(el Element) bool { return is.typ.Interval() && !el.Prefix.IsSingleIP() }) {
		return is.rebuildAll()
	}
	els := slices.Clone(is.elems)
	changed := false
	for _, el := range crossed {
		i, found := slices.BinarySearchFunc(els, el, Element.Compare)
		switch in := is.counts[el] > 0; {
		case in && !found:
			els = slices.Insert(els, i, el)
			changed = true
		case !in && found:
			els = slices.Delete(els, i, i+1)
			changed = true
		}
	}
	if changed {
		is.elems = els
	}
	return changed
}

// rebuildAll recomputes the elements from the counts.
func (is *indexedSet) rebuildAll() bool {
	var els []Element
	if is.typ.Interval() {
		nets := make([]netip.Prefix, 0, len(is.counts))
		for el := range is.counts {
			nets = append(nets, el.Prefix)
		}
		els = prefixElements(nets)
	} else {
		els = make([]Element, 0, len(is.counts))
		for el := range is.counts {
			els = append(els, el)
		}
		slices.SortFunc(els, Element.Compare)
	}
	if slices.Equal(els, is.elems) {
		return false
	}
	is.elems = els
	return true
}

// localAdd is a local endpoint the engine adds as elements: its entity,
// its normalized form, and the existing local endpoint whose body it
// shares.
type localAdd struct {
	id   string
	ent  *entity
	ep   *endpoint // nil: an update that changes nothing here
	like *endpoint
}

// localChange takes a change of a local endpoint when it is (a) a new
// endpoint that needs exactly the body an existing local endpoint has
// (the same policies in each direction and the same profiles), a valid
// interface of its own and single addresses, and no host port mapping:
// it then costs map and set elements, no chain; or (b) a rewrite of an
// endpoint that leaves everything policy reads as it was (the ADD's
// pending endpoint replaced by the one it wrote). Anything else — a
// delete (its tombstone), a new body, a shared or bad interface — is the
// full compile's. adds are the adds taken before in the same batch.
func (e *Engine) localChange(ch Change, adds []localAdd) (localAdd, bool) {
	w, _ := ch.New.(*api.WorkloadEndpoint)
	if !e.flat || w == nil || !isLocal(w, e.c.state.Node) || (ch.Old != nil && !isLocal(ch.Old, e.c.state.Node)) {
		return localAdd{}, false
	}
	ns := namespaceOf(&w.ObjectMeta)
	id := "WorkloadEndpoint " + ns + "/" + w.Name
	ent := e.c.workloadEntity(w)
	if e.c.warnings != nil {
		e.c.warnings = nil
		return localAdd{}, false
	}
	ep := &endpoint{Name: w.Name, Namespace: ns, IfName: w.Spec.InterfaceName, Addrs: ent.nets,
		Labels: ent.labels, NamespaceLabels: ent.nsLabels, Profiles: w.Spec.Profiles, Ports: w.Spec.Ports, ServiceAccount: w.Spec.ServiceAccountName}
	if old, ok := e.localIDs[id]; ok {
		// (b): the same endpoint, rewritten.
		if sameEndpoint(old, ep) && e.ents[id] != nil && sameEntity(e.ents[id], ent) {
			return localAdd{id: id, ent: ent}, true
		}
		return localAdd{}, false
	}
	if e.ents[id] != nil || !e.validInterface(w.Spec.InterfaceName) {
		return localAdd{}, false
	}
	if _, taken := e.bodyKey[ep.IfName]; taken || slices.ContainsFunc(adds, func(a localAdd) bool { return a.ep.IfName == ep.IfName }) {
		return localAdd{}, false
	}
	for _, n := range ep.Addrs {
		if !n.IsSingleIP() {
			return localAdd{}, false
		}
	}
	for _, p := range w.Spec.Ports {
		if p.HostPort != 0 {
			return localAdd{}, false
		}
	}
	key := e.keyOf(ep)
	for _, l := range e.local {
		if e.bodyKey[l.IfName] == key {
			return localAdd{id: id, ent: ent, ep: ep, like: l}, true
		}
	}
	return localAdd{}, false
}

func (e *Engine) validInterface(name string) bool {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t\n\x00*") {
		return false
	}
	for _, p := range e.ifPrefix {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// keyOf is what an endpoint's body is made of, as workloadChains keys
// it: the policies that apply in each direction, in order, and the
// profiles.
func (e *Engine) keyOf(l *endpoint) string {
	var b strings.Builder
	for _, dir := range []bool{true, false} {
		for _, p := range e.pols {
			if (p.typeIn || p.typeOut) && p.selectsWorkload(l) && (dir && p.typeIn || !dir && p.typeOut) {
				fmt.Fprintf(&b, "%p,", p)
			}
		}
		b.WriteByte('|')
	}
	b.WriteString(strings.Join(l.Profiles, ","))
	return b.String()
}

func sameEndpoint(a, b *endpoint) bool {
	return a.Name == b.Name && a.Namespace == b.Namespace && a.IfName == b.IfName && slices.Equal(a.Addrs, b.Addrs) &&
		maps.Equal(a.Labels, b.Labels) && maps.Equal(a.NamespaceLabels, b.NamespaceLabels) && slices.Equal(a.Profiles, b.Profiles) &&
		slices.Equal(a.Ports, b.Ports) && a.ServiceAccount == b.ServiceAccount
}

func sameEntity(a, b *entity) bool {
	return a.id == b.id && a.namespace == b.namespace && a.sa == b.sa && slices.Equal(a.nets, b.nets) && slices.Equal(a.ports, b.ports) &&
		maps.Equal(a.labels, b.labels) && maps.Equal(a.nsLabels, b.nsLabels)
}

// addLocal adds the endpoints' interfaces to the dispatch maps, with the
// verdicts of the endpoints whose bodies they share, and their addresses
// to the anti-spoofing sets.
func (e *Engine) addLocal(adds []localAdd) *Ruleset {
	out := *e.rs
	out.Maps = slices.Clone(e.rs.Maps)
	for i, m := range out.Maps {
		if m.Type != MapIfName || !slices.Contains([]string{MapFromWorkload, MapToWorkload,
			FamilyMap(MapFromWorkload, 4), FamilyMap(MapFromWorkload, 6), FamilyMap(MapToWorkload, 4), FamilyMap(MapToWorkload, 6)}, m.Name) {
			continue
		}
		nm := *m
		nm.Elements = slices.Clone(m.Elements)
		for _, a := range adds {
			for _, el := range m.Elements {
				if el.Key.IfName == a.like.IfName {
					nm.Elements = append(nm.Elements, MapElement{Key: Element{IfName: a.ep.IfName}, Verdict: el.Verdict})
				}
			}
		}
		slices.SortFunc(nm.Elements, func(x, y MapElement) int { return x.Key.Compare(y.Key) })
		out.Maps[i] = &nm
	}
	out.Sets = slices.Clone(e.rs.Sets)
	for i, st := range out.Sets {
		if st.Name != SetWorkloadSrc4 && st.Name != SetWorkloadSrc6 {
			continue
		}
		ns := *st
		ns.Elements = slices.Clone(st.Elements)
		for _, a := range adds {
			for _, n := range a.ep.Addrs {
				if n.Addr().Is4() == (st.Name == SetWorkloadSrc4) {
					ns.Elements = append(ns.Elements, Element{IfName: a.ep.IfName, Addr: n.Addr()})
				}
			}
		}
		slices.SortFunc(ns.Elements, Element.Compare)
		out.Sets[i] = &ns
	}
	for _, a := range adds {
		e.local = append(e.local, a.ep)
		e.bodyKey[a.ep.IfName] = e.bodyKey[a.like.IfName]
		e.localIDs[a.id] = a.ep
		e.locals[a.id] = true
	}
	return &out
}

// notePolicy keeps the engine's policy list current after an inert
// policy change (one that selected no local endpoint): a later local add
// must see it.
func (e *Engine) notePolicy(ch Change) {
	var gone *policyInfo
	if ch.Old != nil && !reflect.ValueOf(ch.Old).IsNil() {
		gone, _, _ = e.c.policyOf(ch.Old)
	}
	if gone != nil {
		e.pols = slices.DeleteFunc(e.pols, func(p *policyInfo) bool { return p.kind == gone.kind && p.id == gone.id })
	}
	if ch.New == nil || reflect.ValueOf(ch.New).IsNil() {
		return
	}
	p, sp, extra := e.c.policyOf(ch.New)
	if p == nil || e.c.parsePolicy(p, sp, extra) != nil {
		return
	}
	p.parsedIn, p.parsedOut = nil, nil
	e.pols = slices.Clone(e.pols) // the slice is shared with the last compile's keys
	i, _ := slices.BinarySearchFunc(e.pols, p, compareTiered)
	e.pols = slices.Insert(e.pols, i, p)
}
