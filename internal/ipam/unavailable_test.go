package ipam

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// outage wraps a Store: while down, every request fails with
// ErrUnavailable, as etcd's client does once its request timeout passes
// (so each request costs that timeout), and is counted.
type outage struct {
	datastore.Store
	down  atomic.Bool
	calls atomic.Int64
}

func (o *outage) fail(what string) error {
	o.calls.Add(1)
	if o.down.Load() {
		return fmt.Errorf("%s: %w: context deadline exceeded", what, datastore.ErrUnavailable)
	}
	return nil
}

func (o *outage) Get(ctx context.Context, key string) (*datastore.KV, error) {
	if err := o.fail("get"); err != nil {
		return nil, err
	}
	return o.Store.Get(ctx, key)
}

func (o *outage) List(ctx context.Context, prefix string) ([]*datastore.KV, int64, error) {
	if err := o.fail("list"); err != nil {
		return nil, 0, err
	}
	return o.Store.List(ctx, prefix)
}

func (o *outage) Txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	if err := o.fail("txn"); err != nil {
		return 0, err
	}
	return o.Store.Txn(ctx, ops)
}

// TestAllocateFailsFastWhenUnavailable: when the datastore does not
// answer, Allocate gives up after the first request (each costs the
// client's request timeout; a CNI ADD must fail with "try again" in
// seconds, not hang) — with the node's view cached or not.
func TestAllocateFailsFastWhenUnavailable(t *testing.T) {
	for _, warm := range []bool{false, true} {
		t.Run(fmt.Sprintf("cached view %v", warm), func(t *testing.T) {
			s := &outage{Store: memstore.New()}
			createPool(t, s, "p", "10.9.0.0/24")
			createNode(t, s, "n1", nil)
			m := newIPAM(t, s, nil)
			if warm {
				alloc(t, m, v4("first", "n1"))
			}
			s.down.Store(true)
			s.calls.Store(0)
			_, err := m.Allocate(ctxT(t), v4("second", "n1"))
			if !errors.Is(err, datastore.ErrUnavailable) {
				t.Fatalf("Allocate: got %v, want an error wrapping %v", err, datastore.ErrUnavailable)
			}
			if n := s.calls.Load(); n != 1 {
				t.Errorf("Allocate made %d datastore requests, want 1", n)
			}
		})
	}
}
