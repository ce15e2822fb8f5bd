package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// Learner writes addresses the DNS forwarder learned into the learned sets
// (policy.SetLearned4/6) of table inet tabby, which the Driver creates
// and never fills. Add returns once the kernel has acknowledged the
// transaction: the forwarder passes an answer on only after that.
type Learner struct {
	netnsFD int

	mu   sync.Mutex
	conn *nftables.Conn // lasting: one netlink socket for every Add
}

// NewLearner returns a learner for the namespace open at netnsFD (0: the
// caller's). It opens nothing until the first Add.
func NewLearner(netnsFD int) *Learner { return &Learner{netnsFD: netnsFD} }

func (l *Learner) dial() (*nftables.Conn, error) {
	if l.conn != nil {
		return l.conn, nil
	}
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if l.netnsFD != 0 {
		opts = append(opts, nftables.WithNetNSFd(l.netnsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("dial nftables: %w", err)
	}
	l.conn = c
	return c, nil
}

// Close closes the netlink socket.
func (l *Learner) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil
	}
	err := l.conn.CloseLasting()
	l.conn = nil
	return err
}

// Add adds (or refreshes the timeout of) each address in its set, in one
// transaction. Adding an element that exists updates its timeout on
// kernels with element timeout updates (verified on 6.18 by
// TestPrivilegedLearnedSets); older ones keep the first timeout.
func (l *Learner) Add(ctx context.Context, elems []policy.Learned) error {
	if len(elems) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, err := l.dial()
	if err != nil {
		return err
	}
	t := tableRef()
	bySet := map[string][]nftables.SetElement{}
	var order []string
	for _, e := range elems {
		if _, ok := bySet[e.Set]; !ok {
			order = append(order, e.Set)
		}
		bySet[e.Set] = append(bySet[e.Set], nftables.SetElement{Key: e.Addr.AsSlice(), Timeout: e.Timeout.Round(time.Millisecond)})
	}
	for _, name := range order {
		ref := &nftables.Set{Table: t, Name: name, HasTimeout: true}
		if err := c.SetAddElements(ref, bySet[name]); err != nil {
			return fmt.Errorf("add learned elements to set %s: %w", name, err)
		}
	}
	if err := c.Flush(); err != nil {
		// A broken socket is not reused.
		c.CloseLasting()
		l.conn = nil
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("add learned elements: a learned set is missing (not programmed yet?): %w", err)
		}
		return fmt.Errorf("add learned elements: %w", err)
	}
	return nil
}

// Dump lists the elements of every learned set with the time each has
// left: what the forwarder restores its bookkeeping from after a restart.
func (l *Learner) Dump(ctx context.Context) ([]policy.Learned, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, err := l.dial()
	if err != nil {
		return nil, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == policy.TableName }) {
		return nil, nil // nothing programmed yet: nothing learned
	}
	sets, err := c.GetSets(tableRef())
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	var out []policy.Learned
	for _, s := range sets {
		if !s.HasTimeout || !policy.IsLearnedSet(s.Name) {
			continue
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		for _, e := range els {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			out = append(out, policy.Learned{Set: s.Name, Addr: a, Timeout: e.Expires})
		}
	}
	return out, nil
}
