package ipam

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// TestRoutingReads: what the router decodes from the stored keys matches
// NodeBlocks and Borrowed.
func TestRoutingReads(t *testing.T) {
	s := memstore.New()
	m := newIPAM(t, s, nil)
	// Two blocks in the pool: a takes one, b the other and borrows one
	// address from a's.
	createPool(t, s, "p", "10.0.0.0/29", blockSize(30))
	createNode(t, s, "a", nil)
	createNode(t, s, "b", nil)
	alloc(t, m, Request{Handle: "a1", Node: "a", IPv4: 1})
	alloc(t, m, Request{Handle: "b1", Node: "b", IPv4: 5})

	kvs, _, err := s.List(ctxT(t), BlockPrefix)
	if err != nil {
		t.Fatal(err)
	}
	owners := map[netip.Prefix]string{}
	borrowed := map[netip.Addr]string{}
	for _, kv := range kvs {
		bo, err := ParseBlock(kv.Key, kv.Value)
		if err != nil {
			t.Fatalf("ParseBlock(%s): %v", kv.Key, err)
		}
		owners[bo.CIDR] = bo.Node
		for a, n := range bo.Borrowed {
			borrowed[a] = n
		}
	}
	affs, _, err := s.List(ctxT(t), AffinityPrefix)
	if err != nil {
		t.Fatal(err)
	}
	confirmed := map[string][]netip.Prefix{}
	for _, kv := range affs {
		node, cidr, ok, err := ParseAffinity(kv.Key, kv.Value)
		if err != nil {
			t.Fatalf("ParseAffinity(%s): %v", kv.Key, err)
		}
		if ok {
			confirmed[node] = append(confirmed[node], cidr)
		}
	}
	for _, node := range []string{"a", "b"} {
		bis, err := m.NodeBlocks(ctxT(t), node)
		if err != nil {
			t.Fatal(err)
		}
		var want []netip.Prefix
		for _, bi := range bis {
			want = append(want, bi.CIDR)
			if owners[bi.CIDR] != node {
				t.Errorf("ParseBlock: %s owned by %q, want %q", bi.CIDR, owners[bi.CIDR], node)
			}
		}
		if diff := cmp.Diff(want, confirmed[node], cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("confirmed blocks of %s (-NodeBlocks +ParseAffinity):\n%s", node, diff)
		}
		addrs, err := m.Borrowed(ctxT(t), node)
		if err != nil {
			t.Fatal(err)
		}
		var got []netip.Addr
		for a, n := range borrowed {
			if n == node {
				got = append(got, a)
			}
		}
		if len(got) != len(addrs) {
			t.Errorf("borrowed by %s: ParseBlock finds %v, Borrowed %v", node, got, addrs)
		}
	}
	if len(borrowed) == 0 {
		t.Errorf("the test did not make any borrowed address")
	}
}

func TestRoutingReadsReject(t *testing.T) {
	tests := []struct {
		name, key, value, want string
		block                  bool
	}{
		{"affinity key", hostPrefix + "a/ipv4/block/10.0.0.0-99", `{"state":"confirmed"}`, "not an affinity key", false},
		{"affinity state", hostPrefix + "a/ipv4/block/10.0.0.0-26", `{"state":"maybe"}`, "unknown state", false},
		{"block key", assignmentPrefix + "ipv4/block/zzz", `{}`, "not a block key", true},
		{"block value", assignmentPrefix + "ipv4/block/10.0.0.0-26", `{"cidr":"10.0.0.0/26"}`, "allocation slots", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.block {
				_, err = ParseBlock(tc.key, []byte(tc.value))
			} else {
				_, _, _, err = ParseAffinity(tc.key, []byte(tc.value))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
