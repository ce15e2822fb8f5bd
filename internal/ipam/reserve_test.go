package ipam

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

func reserve(t testing.TB, s datastore.Store, name string, cidrs ...string) {
	t.Helper()
	r := &api.IPReservation{ObjectMeta: api.ObjectMeta{Name: name}, Spec: api.IPReservationSpec{ReservedCIDRs: cidrs}}
	if _, _, err := datastore.NewClient(s).Apply(ctxT(t), r); err != nil {
		t.Fatalf("apply IPReservation %s: %v", name, err)
	}
}

// TestReservedNeverAllocated fills a small pool around a reservation:
// automatic allocation (own blocks, new blocks, borrowing) never hands out
// a reserved address, a static request for one fails clearly, and Usage
// counts the reserved addresses apart.
func TestReservedNeverAllocated(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p", "10.50.0.0/26", blockSize(28)) // 4 blocks of 16
		reserve(t, s, "gw", "10.50.0.0/30", "10.50.0.17")
		reserve(t, s, "whole-block", "10.50.0.32/28", "10.50.0.36/30") // nested entries
		m := newIPAM(t, s, nil)
		reserved := func(a netip.Addr) bool {
			return netip.MustParsePrefix("10.50.0.0/30").Contains(a) || a == mustAddr("10.50.0.17") || netip.MustParsePrefix("10.50.0.32/28").Contains(a)
		}
		got := map[netip.Addr]bool{}
		for i := 0; ; i++ {
			node := []string{"n1", "n2"}[i%2]
			as, err := m.Allocate(ctx, Request{Handle: "h" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Node: node, IPv4: 1})
			if errors.Is(err, ErrExhausted) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			a := as[0].Addr
			if reserved(a) {
				t.Fatalf("allocation %d got reserved address %s", i, a)
			}
			if got[a] {
				t.Fatalf("address %s handed out twice", a)
			}
			got[a] = true
		}
		if want := 64 - 4 - 1 - 16; len(got) != want {
			t.Errorf("allocated %d addresses, want every unreserved one (%d)", len(got), want)
		}
		_, err := m.Allocate(ctx, Request{Handle: "static", Node: "n1", Static: []netip.Addr{mustAddr("10.50.0.2")}})
		if !errors.Is(err, ErrReserved) || !strings.Contains(err.Error(), `10.50.0.2 is reserved by IPReservation "gw" (10.50.0.0/30)`) {
			t.Fatalf("static request of a reserved address: %v", err)
		}
		u, err := m.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p := u.Pools[0]; p.InUse != 43 || p.Reserved.Int64() != 21 {
			t.Errorf("usage: in use %d, reserved %s; want 43 and 21", p.InUse, p.Reserved)
		}
	})
}

// TestReservationLeavesAddressesInUse: reserving addresses that are
// allocated changes nothing for them; once released they are not reused.
func TestReservationLeavesAddressesInUse(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p", "10.51.0.0/24", blockSize(28))
		m := newIPAM(t, s, nil)
		a := alloc(t, m, v4("early", "n1"))[0].Addr
		reserve(t, s, "late", netip.PrefixFrom(a, 32).String())
		if addrs, err := m.HandleAddrs(ctx, "early"); err != nil || len(addrs) != 1 || addrs[0] != a {
			t.Fatalf("after the reservation the handle holds %v (%v), want [%s]", addrs, err, a)
		}
		// Idempotent re-request of the handle still returns its address.
		if again := alloc(t, m, v4("early", "n1")); again[0].Addr != a {
			t.Fatalf("re-request got %s, want %s", again[0].Addr, a)
		}
		u, err := m.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p := u.Pools[0]; p.InUse != 1 || p.Reserved.Int64() != 0 {
			t.Errorf("usage with the reserved address in use: in use %d, reserved %s; want 1 and 0", p.InUse, p.Reserved)
		}
		if _, err := m.ReleaseHandle(ctx, "early"); err != nil {
			t.Fatal(err)
		}
		for i := range 16 {
			as, err := m.Allocate(ctx, Request{Handle: "next" + string(rune('a'+i)), Node: "n1", IPv4: 1})
			if err != nil {
				t.Fatal(err)
			}
			if as[0].Addr == a {
				t.Fatalf("released reserved address %s was handed out again", a)
			}
		}
	})
}

// TestReservationsFromSource: with Config.Reservations (the agent's
// watched cache) allocations honour the reservations without reading them.
func TestReservationsFromSource(t *testing.T) {
	s := newStoreWithPool(t)
	var src []*api.IPReservation
	c := &counting{Store: s}
	m, err := NewWithConfig(c, nil, Config{Reservations: func() []*api.IPReservation { return src }})
	if err != nil {
		t.Fatal(err)
	}
	first := alloc(t, m, v4("warm", "n1"))[0]
	next := first.Addr.Next()
	src = []*api.IPReservation{{ObjectMeta: api.ObjectMeta{Name: "r"}, Spec: api.IPReservationSpec{ReservedCIDRs: []string{next.String()}}}}
	c.reads.Store(0)
	got := alloc(t, m, v4("h1", "n1"))[0]
	if got.Addr == next {
		t.Fatalf("allocated %s, reserved by the source", next)
	}
	if r := c.reads.Load(); r != 0 {
		t.Errorf("allocation with a reservation source read the datastore %d times", r)
	}
}

// TestReservationsAndStaticPerFamily: in a dual-stack request each family
// honours its own reservations, and a static address of one family leaves
// the other family automatic (issue 16).
func TestReservationsAndStaticPerFamily(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		createPool(t, s, "p4", "10.52.0.0/28", blockSize(28))
		createPool(t, s, "p6", "fd00:52::/124", blockSize(124))
		reserve(t, s, "both", "10.52.0.0/30", "fd00:52::/126")
		m := newIPAM(t, s, nil)
		res4, res6 := netip.MustParsePrefix("10.52.0.0/30"), netip.MustParsePrefix("fd00:52::/126")
		for i := range 12 { // 16 - 4 reserved in each family
			as, err := m.Allocate(ctx, Request{Handle: "d" + string(rune('a'+i)), Node: "n1", IPv4: 1, IPv6: 1})
			if err != nil {
				t.Fatalf("dual-stack allocation %d: %v", i, err)
			}
			if len(as) != 2 {
				t.Fatalf("dual-stack allocation %d: got %v, want two addresses", i, addrsOf(as))
			}
			for _, a := range as {
				if res4.Contains(a.Addr) || res6.Contains(a.Addr) {
					t.Fatalf("allocation %d got reserved address %s", i, a.Addr)
				}
			}
		}
		if _, err := m.Allocate(ctx, Request{Handle: "full", Node: "n1", IPv6: 1}); !errors.Is(err, ErrExhausted) {
			t.Errorf("IPv6 with only reserved addresses left: got %v, want exhausted", err)
		}
		if _, err := m.ReleaseHandle(ctx, "da"); err != nil {
			t.Fatal(err)
		}
		_, err := m.Allocate(ctx, Request{Handle: "s6", Node: "n1", IPv4: 1, IPv6: 1, Static: []netip.Addr{mustAddr("fd00:52::1")}})
		if !errors.Is(err, ErrReserved) || !strings.Contains(err.Error(), "fd00:52::1 is reserved") {
			t.Errorf("static reserved IPv6 address: got %v, want ErrReserved naming it", err)
		}
		as, err := m.Allocate(ctx, Request{Handle: "s6", Node: "n1", IPv4: 1, IPv6: 1, Static: []netip.Addr{mustAddr("fd00:52::4")}}) // released by "da"
		if err != nil {
			t.Fatalf("static IPv6 with automatic IPv4: %v", err)
		}
		got := addrsOf(as)
		slices.SortFunc(got, netip.Addr.Compare) // IPv4 sorts first
		if len(got) != 2 || !got[0].Is4() || res4.Contains(got[0]) || got[1] != mustAddr("fd00:52::4") {
			t.Errorf("static IPv6 with automatic IPv4: got %v, want a free IPv4 address and fd00:52::4", got)
		}
	})
}
