package ipam

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// randomPrefix returns a random, masked prefix of length bits.
func randomPrefix(r *rand.Rand, v4 bool, bits int) netip.Prefix {
	var a netip.Addr
	if v4 {
		var b [4]byte
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		a = netip.AddrFrom4(b)
	} else {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		a = netip.AddrFrom16(b)
	}
	p, _ := a.Prefix(bits)
	return p
}

// TestPropertyOrdinalAddr: for every block size (IPv4 /20-/32, IPv6
// /116-/128) and random blocks, ordinal → address → ordinal is the
// identity, addresses are consecutive from the block's first to its last,
// and the neighbours outside the block have no ordinal.
func TestPropertyOrdinalAddr(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, fam := range []struct {
		v4     bool
		lo, hi int
	}{{true, MinBlockSize4, MaxBlockSize4}, {false, MinBlockSize6, MaxBlockSize6}} {
		for bits := fam.lo; bits <= fam.hi; bits++ {
			for range 8 {
				b := randomPrefix(r, fam.v4, bits)
				n := blockLen(b)
				if want := 1 << (b.Addr().BitLen() - bits); n != want {
					t.Fatalf("blockLen(%s) = %d, want %d", b, n, want)
				}
				prev := netip.Addr{}
				for o := range n {
					a := ordinalAddr(b, o)
					if !b.Contains(a) {
						t.Fatalf("ordinalAddr(%s, %d) = %s: outside the block", b, o, a)
					}
					if got, ok := addrOrdinal(b, a); !ok || got != o {
						t.Fatalf("addrOrdinal(%s, %s) = %d, %v; want %d, true", b, a, got, ok, o)
					}
					if prev.IsValid() && prev.Next() != a {
						t.Fatalf("ordinal %d of %s is %s, want %s", o, b, a, prev.Next())
					}
					prev = a
				}
				if first := ordinalAddr(b, 0); first != b.Addr() {
					t.Errorf("first address of %s = %s", b, first)
				}
				last := ordinalAddr(b, n-1)
				if nx := last.Next(); nx.IsValid() {
					if _, ok := addrOrdinal(b, nx); ok {
						t.Errorf("%s (after the block %s) has an ordinal", nx, b)
					}
				}
				if pv := b.Addr().Prev(); pv.IsValid() {
					if _, ok := addrOrdinal(b, pv); ok {
						t.Errorf("%s (before the block %s) has an ordinal", pv, b)
					}
				}
			}
		}
	}
}

// TestPropertySubPrefix: the i-th block of a pool is aligned, inside the
// pool, and maps back to i.
func TestPropertySubPrefix(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		v4 := r.IntN(2) == 0
		bs := MinBlockSize4 + r.IntN(MaxBlockSize4-MinBlockSize4+1)
		if !v4 {
			bs = MinBlockSize6 + r.IntN(MaxBlockSize6-MinBlockSize6+1)
		}
		plen := r.IntN(bs + 1)
		pool := randomPrefix(r, v4, plen)
		bits := min(bs-plen, 63)
		idx := r.Uint64() & (uint64(1)<<bits - 1)
		sub := subPrefix(pool, bs, idx)
		if sub.Masked() != sub || sub.Bits() != bs || !pool.Contains(sub.Addr()) {
			t.Fatalf("subPrefix(%s, %d, %d) = %s: not an aligned block of the pool", pool, bs, idx, sub)
		}
		if got := subIndex(pool, sub); got != idx {
			t.Fatalf("subIndex(%s, %s) = %d, want %d", pool, sub, got, idx)
		}
	}
}

// TestCandidateBlocksVisitEachOnce: a node's walk over a pool is a
// permutation, and different nodes start in different places.
func TestCandidateBlocksVisitEachOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		cidr string
		bs   int
	}{
		{"one block", "10.0.0.0/26", 26},
		{"two blocks", "10.0.0.0/25", 26},
		{"v4 /20 of /26", "10.0.0.0/20", 26},
		{"v4 /16 of /24", "10.1.0.0/16", 24},
		{"v6 /112 of /122", "fd00::/112", 122},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parsePool(mkPool("p", tc.cidr, blockSize(tc.bs)))
			if err != nil {
				t.Fatal(err)
			}
			want := 1 << (tc.bs - p.cidr.Bits())
			firsts := map[netip.Prefix]bool{}
			for _, node := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
				seen := map[netip.Prefix]bool{}
				it := newCandidateBlocks(p, node)
				for b, ok := it.next(); ok; b, ok = it.next() {
					if seen[b] || !p.fits(b) {
						t.Fatalf("node %s: block %s repeated or not in the pool", node, b)
					}
					seen[b] = true
					if len(seen) == 1 {
						firsts[b] = true
					}
				}
				if len(seen) != want {
					t.Fatalf("node %s visited %d blocks, want %d", node, len(seen), want)
				}
			}
			if want >= 64 && len(firsts) < 4 {
				t.Errorf("8 nodes start at only %d different blocks", len(firsts))
			}
		})
	}
}

// TestBlockReuseLongestFreeFirst: fresh addresses go first; released ones
// go to the back of the queue, in the order they were released.
func TestBlockReuseLongestFreeFirst(t *testing.T) {
	b := newBlock(mustPfx("10.0.0.0/29"), "n1", false)
	got := b.take(5, "h1", nil)
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4}, got); diff != "" {
		t.Fatalf("first take (-want +got):\n%s", diff)
	}
	b.release(2)
	b.release(0)
	got = b.take(4, "h2", nil)
	if diff := cmp.Diff([]int{5, 6, 7, 2}, got); diff != "" {
		t.Fatalf("second take (-want +got):\n%s", diff)
	}
	if got := b.take(1, "h3", nil); !slices.Equal(got, []int{0}) {
		t.Fatalf("third take = %v, want [0]", got)
	}
	if b.numFree() != 0 || b.take(1, "h4", nil) != nil {
		t.Fatalf("a full block handed out more")
	}
}

// TestBlockSequenceNumbers: every allocation gets a new sequence number,
// even of the same ordinal.
func TestBlockSequenceNumbers(t *testing.T) {
	b := newBlock(mustPfx("10.0.0.0/30"), "n1", false)
	b.takeOrdinal(1, "h1", nil)
	s1 := b.seqFor[1]
	b.release(1)
	if b.seqFor[1] != 0 {
		t.Fatalf("a released ordinal kept its sequence number")
	}
	b.takeOrdinal(1, "h1", nil)
	if b.seqFor[1] == s1 {
		t.Fatalf("re-allocation reused sequence number %d", s1)
	}
}

// TestBlockEncodeDecode: a block survives a round trip, attributes are
// shared and dropped when unused, and the JSON has Calico's field names.
func TestBlockEncodeDecode(t *testing.T) {
	b := newBlock(mustPfx("fd00::40/122"), "n1", true)
	attrs := map[string]string{AttrNode: "n1", AttrWorkload: "w"}
	b.take(3, "h1", attrs)
	b.take(2, "h2", attrs)
	b.release(0)
	b.release(1)
	b.release(2)
	data := b.encode()
	for _, field := range []string{`"cidr":"fd00::40/122"`, `"affinity":"host:n1"`, `"strictAffinity":true`, `"handle_id":"h2"`, `"sequenceNumberForAllocation"`, `"unallocated"`} {
		if !strings.Contains(string(data), field) {
			t.Errorf("encoded block lacks %s: %s", field, data)
		}
	}
	if strings.Contains(string(data), `"h1"`) {
		t.Errorf("attribute of released handle h1 kept: %s", data)
	}
	got, err := decodeBlock(data)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if diff := cmp.Diff(b, got, cmp.AllowUnexported(block{}, allocAttr{}), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// TestDecodeCalicoBlock reads a block as Calico writes it.
func TestDecodeCalicoBlock(t *testing.T) {
	const calico = `{"cidr":"192.168.0.0/30","affinity":"host:node1","strictAffinity":false,
	  "allocations":[0,null,1,null],"unallocated":[3,1],
	  "attributes":[{"handle_id":"k8s-pod-network.abc","secondary":{"namespace":"default","node":"node1","pod":"p"}},
	                {"handle_id":"ipip-tunnel-addr-node1","secondary":{"node":"node1","type":"ipipTunnelAddress"}}],
	  "deleted":false,"sequenceNumber":7,"sequenceNumberForAllocation":{"0":5,"2":6}}`
	b, err := decodeBlock([]byte(calico))
	if err != nil {
		t.Fatal(err)
	}
	if b.affinity != "node1" || b.handleOf(2) != "ipip-tunnel-addr-node1" || b.seqFor[0] != 5 || b.numFree() != 2 {
		t.Errorf("decoded %+v", b)
	}
	if got := b.take(1, "x", nil); !slices.Equal(got, []int{3}) {
		t.Errorf("take = %v, want the head of Calico's unallocated list [3]", got)
	}
}

// TestDecodeBlockRejects: a damaged block is an error naming it, never a panic.
func TestDecodeBlockRejects(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"not json", `{`, "decode block"},
		{"bad cidr", `{"cidr":"x"}`, "not a CIDR"},
		{"host bits", `{"cidr":"10.0.0.1/30"}`, "not a valid block"},
		{"too big", `{"cidr":"10.0.0.0/8"}`, "not a valid block"},
		{"slots", `{"cidr":"10.0.0.0/30","allocations":[null]}`, "allocation slots"},
		{"attr index", `{"cidr":"10.0.0.0/30","allocations":[5,null,null,null],"unallocated":[1,2,3]}`, "refers to attribute"},
		{"free mismatch", `{"cidr":"10.0.0.0/30","allocations":[null,null,null,null],"unallocated":[0]}`, "listed free"},
		{"free twice", `{"cidr":"10.0.0.0/30","allocations":[null,null,null,null],"unallocated":[0,0,1,2]}`, "listed twice"},
		{"affinity", `{"cidr":"10.0.0.0/30","affinity":"node1","allocations":[null,null,null,null],"unallocated":[0,1,2,3]}`, "host:<node>"},
		{"seq ordinal", `{"cidr":"10.0.0.0/30","allocations":[null,null,null,null],"unallocated":[0,1,2,3],"sequenceNumberForAllocation":{"9":1}}`, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeBlock([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decodeBlock(%s) = %v, want an error containing %q", tc.json, err, tc.want)
			}
		})
	}
}

// TestKeys: keys round trip and strange keys are refused.
func TestKeys(t *testing.T) {
	for _, p := range []netip.Prefix{mustPfx("10.0.0.0/26"), mustPfx("fd00:1::/122")} {
		if got, err := parseBlockKey(blockKey(p)); err != nil || got != p {
			t.Errorf("parseBlockKey(%q) = %v, %v", blockKey(p), got, err)
		}
		n, got, err := parseAffinityKey(affinityKey("node-1.example", p))
		if err != nil || got != p || n != "node-1.example" {
			t.Errorf("parseAffinityKey = %q %v %v", n, got, err)
		}
	}
	if want := "/tabby/v1/ipam/host/n1/ipv4/block/10.0.0.0-26"; affinityKey("n1", mustPfx("10.0.0.0/26")) != want {
		t.Errorf("affinity key = %q, want %q", affinityKey("n1", mustPfx("10.0.0.0/26")), want)
	}
	for _, k := range []string{
		"/tabby/v1/ipam/assignment/ipv4/block/10.0.0.1-26",
		"/tabby/v1/ipam/assignment/ipv6/block/10.0.0.0-26",
		"/tabby/v1/ipam/assignment/ipv4/block/10.0.0.0",
		"/tabby/v1/ipam/host//ipv4/block/10.0.0.0-26",
		"/tabby/v1/ipam/handle/a/b",
	} {
		_, err1 := parseBlockKey(k)
		_, _, err2 := parseAffinityKey(k)
		_, err3 := parseHandleKey(k)
		if err1 == nil || err2 == nil || err3 == nil {
			t.Errorf("key %q accepted", k)
		}
	}
}

// FuzzDecodeBlock: decoding arbitrary bytes never panics, and whatever
// decodes encodes and decodes to the same block.
func FuzzDecodeBlock(f *testing.F) {
	f.Add([]byte(`{"cidr":"10.0.0.0/30","affinity":"host:n","allocations":[0,null,null,null],"unallocated":[1,2,3],"attributes":[{"handle_id":"h","secondary":{"node":"n"}}],"sequenceNumberForAllocation":{"0":1}}`))
	f.Add(newBlock(mustPfx("fd00::/126"), "n", false).encode())
	f.Add([]byte(`{"cidr":"10.0.0.0/32","allocations":[null],"unallocated":[0]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBlock(data)
		if err != nil {
			return
		}
		// Allocation and release must work on anything that decodes.
		c := b.clone()
		c.take(2, "fuzz", map[string]string{"k": "v"})
		for o := range c.alloc {
			if o%3 == 0 {
				c.release(o)
			}
		}
		enc := c.encode()
		d, err := decodeBlock(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		if !slices.Equal(d.free, c.free) || !slices.Equal(d.alloc, c.alloc) {
			t.Fatalf("round trip changed the block: %s", enc)
		}
		var v map[string]any
		if err := json.Unmarshal(enc, &v); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseKeys: key parsing never panics and round trips.
func FuzzParseKeys(f *testing.F) {
	f.Add("/tabby/v1/ipam/host/n1/ipv4/block/10.0.0.0-26")
	f.Add("/tabby/v1/ipam/assignment/ipv6/block/fd00::-122")
	f.Add("/tabby/v1/ipam/handle/net.abc.eth0")
	f.Fuzz(func(t *testing.T, key string) {
		if p, err := parseBlockKey(key); err == nil && blockKey(p) != key {
			t.Fatalf("block key %q parses to %s, which writes %q", key, p, blockKey(p))
		}
		if n, p, err := parseAffinityKey(key); err == nil && affinityKey(n, p) != key {
			t.Fatalf("affinity key %q parses to %s %s, which writes %q", key, n, p, affinityKey(n, p))
		}
		if h, err := parseHandleKey(key); err == nil && handleKey(h) != key {
			t.Fatalf("handle key %q parses to %q", key, h)
		}
	})
}

// subIndex is the index of sub inside p (inverse of subPrefix), valid while
// the index fits in 64 bits.
func subIndex(p, sub netip.Prefix) uint64 {
	d := toU128(sub.Addr()).sub(toU128(p.Masked().Addr()))
	s := addrBits(sub.Addr()) - sub.Bits()
	switch {
	case s == 0:
		return d.lo
	case s < 64:
		return d.lo>>s | d.hi<<(64-s)
	default:
		return d.hi >> (s - 64)
	}
}
