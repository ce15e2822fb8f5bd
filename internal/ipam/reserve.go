package ipam

import (
	"context"
	"fmt"
	"math/big"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/internal/api"
)

// reservations is the union of every IPReservation's CIDRs. Allocate
// reads it once per request (from Config.Reservations, or one small
// listing), so a reservation counts from the next allocation on; addresses
// already held are not touched.
type reservations struct {
	cidrs  []netip.Prefix // sorted by address, then prefix length
	owners []string       // IPReservation name of each entry
}

// readReservations returns the IPReservations: from Config.Reservations
// when set, else listed from the datastore.
func (m *IPAM) readReservations(ctx context.Context) (*reservations, error) {
	if m.cfg.Reservations != nil {
		return m.buildReservations(m.cfg.Reservations()), nil
	}
	rs, _, err := m.client.List(ctx, "IPReservation", "")
	if err != nil {
		return nil, fmt.Errorf("read IP reservations: %w", err)
	}
	list := make([]*api.IPReservation, len(rs))
	for i, r := range rs {
		list[i] = r.(*api.IPReservation)
	}
	return m.buildReservations(list), nil
}

// buildReservations merges the reservations' CIDRs into disjoint prefixes.
func (m *IPAM) buildReservations(rs []*api.IPReservation) *reservations {
	r := &reservations{}
	type entry struct {
		p     netip.Prefix
		owner string
	}
	var es []entry
	for _, res := range rs {
		for _, s := range res.Spec.ReservedCIDRs {
			p, err := api.ParseNet(s)
			if err != nil {
				m.log.Warn("ignoring invalid reserved CIDR", "reservation", res.Name, "cidr", s)
				continue
			}
			es = append(es, entry{p.Masked(), res.Name})
		}
	}
	slices.SortFunc(es, func(a, b entry) int {
		if c := comparePrefixes(a.p, b.p); c != 0 {
			return c
		}
		return compareStrings(a.owner, b.owner)
	})
	// Prefixes nest or are disjoint: after sorting, one contained in
	// another follows it, so keeping only those not inside the last kept
	// one leaves disjoint prefixes.
	for _, e := range es {
		if n := len(r.cidrs); n > 0 && r.cidrs[n-1].Contains(e.p.Addr()) {
			continue
		}
		r.cidrs = append(r.cidrs, e.p)
		r.owners = append(r.owners, e.owner)
	}
	return r
}

// reservedBy says which reservation holds a, if any.
func (r *reservations) reservedBy(a netip.Addr) (owner string, cidr netip.Prefix, ok bool) {
	if r == nil {
		return "", netip.Prefix{}, false
	}
	for i, p := range r.cidrs {
		if p.Contains(a) {
			return r.owners[i], p, true
		}
	}
	return "", netip.Prefix{}, false
}

func (r *reservations) overlaps(p netip.Prefix) bool {
	if r == nil {
		return false
	}
	for _, c := range r.cidrs {
		if c.Overlaps(p) {
			return true
		}
	}
	return false
}

// covers reports whether every address of p is reserved.
func (r *reservations) covers(p netip.Prefix) bool {
	if r == nil {
		return false
	}
	for _, c := range r.cidrs {
		if c.Bits() <= p.Bits() && c.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// size counts the reserved addresses inside p.
func (r *reservations) size(p netip.Prefix) *big.Int {
	n := new(big.Int)
	if r == nil {
		return n
	}
	for _, c := range r.cidrs {
		if !c.Overlaps(p) {
			continue
		}
		bits := max(c.Bits(), p.Bits())
		n.Add(n, new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-bits)))
	}
	return n
}

// takeUnreserved is take, skipping free ordinals that are reserved.
func (b *block) takeUnreserved(n int, handle string, attrs map[string]string, r *reservations) []int {
	if !r.overlaps(b.cidr) {
		return b.take(n, handle, attrs)
	}
	var got []int
	for _, o := range b.free {
		if len(got) == n {
			break
		}
		if _, _, reserved := r.reservedBy(b.addr(o)); !reserved {
			got = append(got, o)
		}
	}
	for _, o := range got {
		b.takeOrdinal(o, handle, attrs)
	}
	return got
}

// reservedFree counts the free ordinals of b that are reserved.
func (b *block) reservedFree(r *reservations) int {
	if !r.overlaps(b.cidr) {
		return 0
	}
	n := 0
	for _, o := range b.free {
		if _, _, ok := r.reservedBy(b.addr(o)); ok {
			n++
		}
	}
	return n
}
