package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/internal/datastore"
)

// probeHandle names the request Available plans; it is never written.
const probeHandle = "tabby-availability-probe"

// Available reports whether req could be served on req.Node now, writing
// nothing: nil, an *ExhaustedError (errors.Is ErrExhausted), an error
// naming why no pool can be used, or a datastore error. It plans the
// request exactly as Allocate does, so the two cannot disagree. The common
// answer — a free address in one of the node's own blocks, with the
// node's view cached — reads nothing from the datastore; only a node
// whose blocks are full costs a fresh view and a read of the family's
// blocks and affinities, and a "no" is always decided on fresh data.
// req.Handle may be empty.
func (m *IPAM) Available(ctx context.Context, req Request) error {
	if req.Handle == "" {
		req.Handle = probeHandle
	}
	if err := req.validate(); err != nil {
		return fmt.Errorf("check availability: %w", err)
	}
	fresh := false
	for {
		v, err := m.viewFor(ctx, req.Node, fresh)
		if err != nil {
			return fmt.Errorf("check availability on node %q: %w", req.Node, err)
		}
		var claimed []*block
		pl := &plan{req: &req, attrs: map[string]string{}, v: v, touched: map[netip.Prefix]*block{},
			pools: map[string]*pool{}, cluster: map[int]*clusterView{}, claimed: &claimed, dryRun: true}
		err = m.planRequest(ctx, pl)
		switch {
		case err == nil && (v.fresh || len(pl.cluster) == 0):
			return nil
		case err == nil:
			// The node's blocks are full and the answer came from other
			// blocks: decide it with the pools and IPAMConfig read now.
		case errors.Is(err, datastore.ErrUnavailable), v.fresh:
			return fmt.Errorf("check availability on node %q: %w", req.Node, err)
		}
		// The cached view may be stale (a new pool, a freed address in
		// another process, a changed IPAMConfig): decide on fresh data.
		fresh = true
	}
}
