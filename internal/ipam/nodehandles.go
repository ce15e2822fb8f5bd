package ipam

import "context"

// NodeHandles maps each handle holding addresses for node (in its own
// blocks or borrowed) to the allocation's type attribute ("" for workload
// endpoints); node "" means every node. The agent uses it for CNI GC and its reconcile on start.
func (m *IPAM) NodeHandles(ctx context.Context, node string) (map[string]string, error) {
	s, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, a := range s.allocations() {
		if (node == "" || a.node == node) && a.handle != "" {
			out[a.handle] = a.attrs[AttrType]
		}
	}
	return out, nil
}
