package flows

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// DefaultWindow is how long flows are aggregated before their records
// enter the ring (Goldmane aggregates over 15 s; a few seconds keep the
// console live).
const DefaultWindow = 5 * time.Second

// DefaultMaxWindowFlows bounds the distinct flows of one window; more
// are counted in Overflow and dropped.
const DefaultMaxWindowFlows = 10000

// aggKey is what makes two observations one record: everything but the
// source port, the times and the counters (Goldmane aggregates away the
// source port too).
type aggKey struct {
	proto, srcIP, dstIP, direction string
	dstPort                        uint16
	action, pendingAction          string
	policy                         PolicyRef
	pending                        PolicyRef
}

// Aggregator merges observations of one window into records and moves
// them into a Ring when the window closes. Safe for concurrent use.
type Aggregator struct {
	ring     *Ring
	max      int
	mu       sync.Mutex
	cur      map[aggKey]*FlowRecord
	overflow uint64
}

// NewAggregator returns an aggregator feeding ring, holding at most max
// flows per window (DefaultMaxWindowFlows when max <= 0).
func NewAggregator(ring *Ring, max int) *Aggregator {
	if max <= 0 {
		max = DefaultMaxWindowFlows
	}
	return &Aggregator{ring: ring, max: max, cur: map[aggKey]*FlowRecord{}}
}

func keyOf(r *FlowRecord) aggKey {
	k := aggKey{proto: r.Proto, srcIP: r.SrcIP, dstIP: r.DstIP, direction: r.Direction, dstPort: r.DstPort,
		action: r.Action, pendingAction: r.PendingAction, policy: r.Policy}
	if r.PendingPolicy != nil {
		k.pending = *r.PendingPolicy
	}
	return k
}

// Add merges one observation (a flow seen, or counters of one) into the
// current window.
func (a *Aggregator) Add(r FlowRecord) {
	k := keyOf(&r)
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur, ok := a.cur[k]; ok {
		if r.Start.Before(cur.Start) {
			cur.Start = r.Start
		}
		if r.End.After(cur.End) {
			cur.End = r.End
		}
		if cur.SrcPort != r.SrcPort {
			cur.SrcPort = 0
		}
		cur.Packets += r.Packets
		cur.Bytes += r.Bytes
		return
	}
	if len(a.cur) >= a.max {
		a.overflow++
		return
	}
	a.cur[k] = &r
}

// Overflow is the number of observations dropped because a window was full.
func (a *Aggregator) Overflow() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.overflow
}

// Flush closes the window: its records enter the ring, ordered by start.
// It returns them.
func (a *Aggregator) Flush() []FlowRecord {
	a.mu.Lock()
	cur := a.cur
	a.cur = make(map[aggKey]*FlowRecord, len(cur))
	a.mu.Unlock()
	recs := make([]FlowRecord, 0, len(cur))
	for _, r := range cur {
		recs = append(recs, *r)
	}
	slices.SortFunc(recs, func(x, y FlowRecord) int {
		if c := x.Start.Compare(y.Start); c != 0 {
			return c
		}
		if c := cmp.Compare(x.SrcIP, y.SrcIP); c != 0 {
			return c
		}
		if c := cmp.Compare(x.DstIP, y.DstIP); c != 0 {
			return c
		}
		if c := cmp.Compare(x.DstPort, y.DstPort); c != 0 {
			return c
		}
		return cmp.Compare(x.Direction, y.Direction)
	})
	a.ring.Add(recs...)
	return recs
}
