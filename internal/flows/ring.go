package flows

import (
	"sync"
)

// Ring holds the last Cap flow records of an agent, oldest first, and
// hands new ones to followers. Its memory is bounded by its capacity: a
// record is a fixed-size struct plus its strings (the endpoint pointers are
// shared with the agent's endpoint cache, not copied per record); see
// docs/design/policy.md "Flow logs" for the measured bound.
type Ring struct {
	mu        sync.Mutex
	buf       []FlowRecord
	next      int    // where the next record goes
	full      bool   // buf has wrapped
	seq       uint64 // records ever added
	followers map[*follower]struct{}
	dropped   uint64 // records a slow follower missed
}

type follower struct {
	ch chan FlowRecord
}

// DefaultRingSize is the number of records an agent keeps.
const DefaultRingSize = 10000

// NewRing returns a ring of capacity n (DefaultRingSize when n <= 0).
func NewRing(n int) *Ring {
	if n <= 0 {
		n = DefaultRingSize
	}
	return &Ring{buf: make([]FlowRecord, n), followers: map[*follower]struct{}{}}
}

// Cap is the ring's capacity.
func (r *Ring) Cap() int { return len(r.buf) }

// Len is the number of records held.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// Added is the number of records ever added.
func (r *Ring) Added() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Dropped is the number of records slow followers missed.
func (r *Ring) Dropped() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// Add appends records, overwriting the oldest once full, and hands each
// to every follower that has room for it (a follower that does not keep
// up misses records rather than holding the agent up).
func (r *Ring) Add(recs ...FlowRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		r.buf[r.next] = rec
		r.next++
		if r.next == len(r.buf) {
			r.next, r.full = 0, true
		}
		r.seq++
		for f := range r.followers {
			select {
			case f.ch <- rec:
			default:
				r.dropped++
			}
		}
	}
}

// Snapshot returns the records f selects, oldest first.
func (r *Ring) Snapshot(f Filter) []FlowRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshotLocked(f)
}

func (r *Ring) snapshotLocked(f Filter) []FlowRecord {
	var out []FlowRecord
	visit := func(recs []FlowRecord) {
		for i := range recs {
			if f.Match(&recs[i]) {
				out = append(out, recs[i])
			}
		}
	}
	if r.full {
		visit(r.buf[r.next:])
	}
	visit(r.buf[:r.next])
	return out
}

// Follow returns the records f selects now and a channel of every record
// added from then on (none missed between the two), until stop is called.
func (r *Ring) Follow(f Filter, buffer int) (now []FlowRecord, next <-chan FlowRecord, stop func()) {
	fl := &follower{ch: make(chan FlowRecord, buffer)}
	r.mu.Lock()
	now = r.snapshotLocked(f)
	r.followers[fl] = struct{}{}
	r.mu.Unlock()
	return now, fl.ch, func() {
		r.mu.Lock()
		delete(r.followers, fl)
		r.mu.Unlock()
	}
}
