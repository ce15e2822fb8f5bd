package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/api"
)

// ProblemKind classifies what Check finds.
type ProblemKind string

const (
	// ProblemLeaked: an allocation whose handle belongs to nothing alive.
	ProblemLeaked ProblemKind = "leaked"
	// ProblemHeldTwice: an address with two holders (two endpoints list
	// it, an endpoint lists an address allocated to another handle, or two
	// overlapping blocks both allocate it).
	ProblemHeldTwice ProblemKind = "held-twice"
	// ProblemEndpointAddress: a live endpoint lists an address IPAM has free.
	ProblemEndpointAddress ProblemKind = "endpoint-address-free"
	// ProblemHandleWithoutAllocations: a handle record holding nothing.
	ProblemHandleWithoutAllocations ProblemKind = "handle-without-allocations"
	// ProblemHandleMismatch: a handle record that disagrees with the blocks.
	ProblemHandleMismatch ProblemKind = "handle-mismatch"
	// ProblemMissingAffinity: a block affine to a node that has no
	// confirmed affinity record for it.
	ProblemMissingAffinity ProblemKind = "missing-affinity"
	// ProblemDanglingAffinity: a confirmed affinity whose block is gone or
	// belongs to another node (several hosts holding one affinity:
	// libcalico-go#778).
	ProblemDanglingAffinity ProblemKind = "dangling-affinity"
	// ProblemStalePending: a claim left pending longer than ClaimTimeout.
	ProblemStalePending ProblemKind = "stale-pending-affinity"
	// ProblemDeletedNode: a block or affinity of a node that does not exist.
	ProblemDeletedNode ProblemKind = "deleted-node"
	// ProblemOutsidePool: allocations in a block that is in no IP pool.
	ProblemOutsidePool ProblemKind = "outside-pool"
	// ProblemOverlap: two blocks overlap.
	ProblemOverlap ProblemKind = "overlapping-blocks"
	// ProblemDamaged: a record that does not decode or is inconsistent.
	ProblemDamaged ProblemKind = "damaged"
)

// Problem is one finding of Check.
type Problem struct {
	Kind   ProblemKind
	Addr   netip.Addr   // when about an address
	Block  netip.Prefix // when about a block
	Handle string
	Node   string
	// Seq is the allocation's sequence number (leaked addresses only): a
	// release naming it frees that allocation and never a later one.
	Seq    uint64
	Detail string
}

func (p Problem) String() string {
	var parts []string
	if p.Addr.IsValid() {
		parts = append(parts, p.Addr.String())
	} else if p.Block.IsValid() {
		parts = append(parts, p.Block.String())
	}
	return fmt.Sprintf("%s: %s%s", p.Kind, strings.Join(parts, " "), prefixed(": ", p.Detail))
}

func prefixed(sep, s string) string {
	if s == "" {
		return ""
	}
	return sep + s
}

// Report is the result of Check.
type Report struct {
	Pools, Blocks, Allocations, Handles, Endpoints, LiveHandles int
	// InFlight counts allocations not held by a live endpoint that are too
	// young to call leaked (an ADD still in progress).
	InFlight int
	Problems []Problem
}

// OK reports whether Check found nothing wrong.
func (r Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) add(p Problem) { r.Problems = append(r.Problems, p) }

// InFlightAge is how young an allocation without a live endpoint must be
// for Check to count it in flight instead of leaked (when Check computes
// the live handles itself).
const InFlightAge = time.Minute

// Check compares IPAM state with the endpoints and nodes and reports every
// inconsistency; it changes nothing. live lists the handles in use; nil
// means "compute them" (LiveHandles), in which case allocations younger
// than InFlightAge are not called leaked.
func (m *IPAM) Check(ctx context.Context, live map[string]bool) (Report, error) {
	start := m.now()
	nodes, err := m.LiveNodes(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("check: %w", err)
	}
	weps, err := m.endpoints(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("check: %w", err)
	}
	computed := live == nil
	if computed {
		live = liveHandles(nodes, weps)
	}
	pools, err := m.readPools(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("check: %w", err)
	}
	s, err := m.snapshot(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("check: %w", err)
	}
	r := &Report{Pools: len(pools), Blocks: len(s.sorted), Handles: len(s.handles), LiveHandles: len(live)}
	for _, d := range s.damaged {
		r.add(Problem{Kind: ProblemDamaged, Detail: fmt.Sprintf("%s: %v", d.key, d.err)})
	}
	m.checkBlocks(s, pools, nodes, r)
	m.checkAffinities(s, start, r)
	allocs := s.allocations()
	r.Allocations = len(allocs)
	m.checkAllocations(s, allocs, live, computed, start, r)
	checkEndpoints(s, pools, nodes, weps, r)
	return *r, nil
}

func (m *IPAM) checkBlocks(s *snapshot, pools []*pool, nodes map[string]bool, r *Report) {
	for i, cidr := range s.sorted {
		if i > 0 && s.sorted[i-1].Overlaps(cidr) {
			r.add(Problem{Kind: ProblemOverlap, Block: cidr, Detail: fmt.Sprintf("overlaps block %s", s.sorted[i-1])})
			a, b := s.blocks[s.sorted[i-1]], s.blocks[cidr]
			if a != nil && b != nil {
				for o := range b.alloc {
					if !b.allocated(o) {
						continue
					}
					if ao, ok := a.ordinal(b.addr(o)); ok && a.allocated(ao) {
						r.add(Problem{Kind: ProblemHeldTwice, Addr: b.addr(o), Handle: b.handleOf(o),
							Detail: fmt.Sprintf("allocated in block %s to handle %q and in block %s to handle %q", a.cidr, a.handleOf(ao), b.cidr, b.handleOf(o))})
					}
				}
			}
		}
	}
	for _, b := range s.blockList() {
		if poolFor(pools, b.cidr) == nil && !b.empty() {
			r.add(Problem{Kind: ProblemOutsidePool, Block: b.cidr, Node: b.affinity, Detail: fmt.Sprintf("%d address(es) allocated in a block that is in no IP pool", b.inUse())})
		}
		if b.affinity == "" {
			continue
		}
		if !nodes[b.affinity] {
			r.add(Problem{Kind: ProblemDeletedNode, Block: b.cidr, Node: b.affinity, Detail: fmt.Sprintf("block is affine to node %q, which does not exist (GC releases it)", b.affinity)})
		}
		if a, ok := s.affinity(b.affinity, b.cidr); !ok || a.v.State != StateConfirmed {
			state := "none"
			if ok {
				state = a.v.State
			}
			r.add(Problem{Kind: ProblemMissingAffinity, Block: b.cidr, Node: b.affinity, Detail: fmt.Sprintf("block is affine to node %q, whose affinity record is %s", b.affinity, state)})
		}
	}
}

func (m *IPAM) checkAffinities(s *snapshot, now time.Time, r *Report) {
	for _, a := range s.affs {
		b := s.blocks[a.cidr]
		owned := b != nil && b.affinity == a.node
		switch {
		case a.v.State == StatePending:
			if a.stalePending(now, m.cfg.ClaimTimeout) {
				r.add(Problem{Kind: ProblemStalePending, Block: a.cidr, Node: a.node, Detail: fmt.Sprintf("node %q started claiming the block and never finished (GC removes it)", a.node)})
			}
		case !owned:
			holder := "no block exists"
			if b != nil {
				holder = fmt.Sprintf("the block is affine to %q", b.affinity)
			}
			r.add(Problem{Kind: ProblemDanglingAffinity, Block: a.cidr, Node: a.node, Detail: fmt.Sprintf("node %q has a %s affinity, but %s", a.node, a.v.State, holder)})
		}
	}
}

func (m *IPAM) checkAllocations(s *snapshot, allocs []allocation, live map[string]bool, computed bool, start time.Time, r *Report) {
	perHandle := map[string]map[string]int{}
	for _, a := range allocs {
		if perHandle[a.handle] == nil {
			perHandle[a.handle] = map[string]int{}
		}
		perHandle[a.handle][a.b.cidr.String()]++
		if live[a.handle] {
			continue
		}
		ts, err := time.Parse(time.RFC3339, a.attrs[AttrTimestamp])
		if computed && err == nil && start.Sub(ts) < InFlightAge {
			r.InFlight++
			continue
		}
		detail := "its handle belongs to no live endpoint or node"
		if a.handle == "" {
			detail = "it has no handle"
		}
		if w := a.attrs[AttrWorkload]; w != "" {
			detail += fmt.Sprintf(" (workload %q)", w)
		}
		r.add(Problem{Kind: ProblemLeaked, Addr: a.addr, Block: a.b.cidr, Handle: a.handle, Node: a.node, Seq: a.seq, Detail: detail})
	}
	for _, h := range sortedKeys(perHandle) {
		if h == "" {
			continue
		}
		rec, ok := s.handles[h]
		switch {
		case !ok:
			r.add(Problem{Kind: ProblemHandleMismatch, Handle: h, Detail: fmt.Sprintf("handle %q holds addresses in %v but has no handle record", h, sortedKeys(perHandle[h]))})
		case !mapsEqual(rec.v.Block, perHandle[h]):
			r.add(Problem{Kind: ProblemHandleMismatch, Handle: h, Detail: fmt.Sprintf("handle record of %q says %v, the blocks say %v", h, rec.v.Block, perHandle[h])})
		}
	}
	for _, h := range sortedKeys(s.handles) {
		if _, ok := perHandle[h]; !ok {
			r.add(Problem{Kind: ProblemHandleWithoutAllocations, Handle: h, Detail: fmt.Sprintf("handle record %q holds no address (GC removes it)", h)})
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkEndpoints compares the addresses live endpoints list with IPAM.
func checkEndpoints(s *snapshot, pools []*pool, nodes map[string]bool, weps []*api.WorkloadEndpoint, r *Report) {
	holders := map[netip.Addr][]string{}
	for _, w := range weps {
		if w.Spec.Node != "" && !nodes[w.Spec.Node] {
			continue
		}
		r.Endpoints++
		name := w.Namespace + "/" + w.Name
		for _, n := range w.Spec.IPNetworks {
			pfx, err := api.ParseNet(n)
			if err != nil || pfx.Bits() != pfx.Addr().BitLen() {
				continue
			}
			a := pfx.Addr()
			holders[a] = append(holders[a], name)
			if poolContaining(pools, a) == nil && s.blockOf(a) == nil {
				continue // not an IPAM address
			}
			b := s.blockOf(a)
			var o int
			if b != nil {
				o, _ = b.ordinal(a)
			}
			switch {
			case b == nil || !b.allocated(o):
				r.add(Problem{Kind: ProblemEndpointAddress, Addr: a, Handle: w.Spec.IPAMHandle, Node: w.Spec.Node,
					Detail: fmt.Sprintf("endpoint %s uses it, but IPAM has it free: it could be given to another workload", name)})
			case w.Spec.IPAMHandle != "" && b.handleOf(o) != w.Spec.IPAMHandle:
				r.add(Problem{Kind: ProblemHeldTwice, Addr: a, Handle: b.handleOf(o), Node: w.Spec.Node,
					Detail: fmt.Sprintf("endpoint %s (handle %q) uses it, but IPAM gave it to handle %q", name, w.Spec.IPAMHandle, b.handleOf(o))})
			}
		}
	}
	addrs := make([]netip.Addr, 0, len(holders))
	for a := range holders {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range addrs {
		if hs := holders[a]; len(hs) > 1 {
			r.add(Problem{Kind: ProblemHeldTwice, Addr: a, Detail: fmt.Sprintf("endpoints %s all use it", strings.Join(hs, ", "))})
		}
	}
}
