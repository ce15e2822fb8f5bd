package ipam

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// TestAvailable: Available says yes exactly when Allocate would succeed,
// writes nothing, and costs no read in the common case.
func TestAvailable(t *testing.T) {
	forEachStore(t, func(t *testing.T, s datastore.Store) {
		ctx := ctxT(t)
		c := &counting{Store: s}
		m := newIPAM(t, c, nil)
		if err := m.Available(ctx, v4("", "n1")); err == nil || !strings.Contains(err.Error(), "there is no IPv4 IPPool") {
			t.Fatalf("Available with no pool = %v; want no IPv4 pool", err)
		}
		createPool(t, s, "off", "10.71.0.0/26", disabled())
		if err := m.Available(ctx, v4("", "n1")); err == nil || !strings.Contains(err.Error(), "disabled") {
			t.Fatalf("Available with only a disabled pool = %v; want disabled", err)
		}
		createPool(t, s, "p", "10.70.0.0/29", blockSize(30))
		// A pool with no block yet: a block can be claimed. Nothing is written.
		if err := m.Available(ctx, v4("", "n1")); err != nil {
			t.Fatalf("Available with an empty pool = %v; want nil", err)
		}
		if keys := ipamKeys(t, s); len(keys) != 0 {
			t.Fatalf("Available wrote %v", keys)
		}
		if err := m.Available(ctx, Request{Node: "n1", IPv6: 1}); err == nil || !strings.Contains(err.Error(), "IPv6") {
			t.Errorf("Available for IPv6 with only IPv4 pools = %v; want no IPv6 pool", err)
		}
		alloc(t, m, v4("h0", "n1"))
		c.reads.Store(0)
		c.txns.Store(0)
		if err := m.Available(ctx, v4("", "n1")); err != nil {
			t.Fatalf("Available with free addresses in n1's block = %v", err)
		}
		if r, x := c.reads.Load(), c.txns.Load(); r != 0 || x != 0 {
			t.Errorf("Available with a free address in the node's block took %d reads and %d writes; want none", r, x)
		}
		// Fill the pool (8 addresses, two blocks of 4).
		for i := 1; i < 8; i++ {
			alloc(t, m, v4(fmt.Sprintf("h%d", i), "n1"))
		}
		c.txns.Store(0)
		err := m.Available(ctx, v4("", "n1"))
		if !errors.Is(err, ErrExhausted) {
			t.Fatalf("Available with the pool full = %v; want ErrExhausted", err)
		}
		if _, aerr := m.Allocate(ctx, v4("h8", "n1")); !errors.Is(aerr, ErrExhausted) {
			t.Fatalf("Allocate disagrees with Available: %v", aerr)
		}
		if x := c.txns.Load(); x != 0 {
			t.Errorf("Available wrote %d times", x)
		}
		// Other hosts may borrow unless strictAffinity is on.
		if _, err := m.ReleaseHandle(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		if err := m.Available(ctx, v4("", "n2")); err != nil {
			t.Errorf("Available on n2 with a borrowable address = %v; want nil", err)
		}
		setConfig(t, s, api.IPAMConfigSpec{StrictAffinity: true})
		if err := m.Available(ctx, v4("", "n2")); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "strictAffinity") {
			t.Errorf("Available on n2 under strictAffinity = %v; want exhausted because of strictAffinity", err)
		}
		// A freed address is seen even by a process whose view is stale.
		if err := m.Available(ctx, v4("", "n1")); err != nil {
			t.Errorf("Available on n1 after a release = %v; want nil", err)
		}
	})
}
