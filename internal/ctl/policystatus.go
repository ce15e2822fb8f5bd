package ctl

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// policyStatusColumn is the STATUS column of `tabby get -o wide` for
// policies and profiles. It is fed by what each node's agent reports in
// its Node status (status.quarantinedPolicies): "ok" when no node
// quarantined the object, otherwise "Quarantined on N/M nodes: <reason>".
// A node reports within a heartbeat after its agent compiled the change
// (it writes at once when the set changes). It returns nil for other kinds.
func policyStatusColumn(ctx context.Context, c *datastore.Client, k api.KindInfo) (*column, error) {
	switch k.Kind {
	case "NetworkPolicy", "GlobalNetworkPolicy", "Profile":
	default:
		return nil, nil
	}
	nodes, _, err := c.List(ctx, "Node", "")
	if err != nil {
		return nil, fmt.Errorf("read node status for the STATUS column: %w", err)
	}
	type entry struct {
		nodes  []string
		reason string
	}
	byID := map[string]*entry{}
	for _, r := range nodes {
		n := r.(*api.Node)
		for _, q := range n.Status.QuarantinedPolicies {
			if q.Kind != k.Kind {
				continue
			}
			id := q.Namespace + "/" + q.Name
			e := byID[id]
			if e == nil {
				e = &entry{reason: q.Reason}
				byID[id] = e
			}
			e.nodes = append(e.nodes, n.Name)
		}
	}
	total := len(nodes)
	return &column{title: "STATUS", wide: true, value: func(r api.Resource) string {
		m := r.GetObjectMeta()
		ns := ""
		if k.Scope == api.Namespaced {
			ns = m.Namespace
		}
		e := byID[ns+"/"+m.Name]
		if e == nil {
			return "ok"
		}
		sort.Strings(e.nodes)
		return fmt.Sprintf("Quarantined on %d/%d nodes (%s): %s", len(e.nodes), total, strings.Join(e.nodes, ","), e.reason)
	}}, nil
}
