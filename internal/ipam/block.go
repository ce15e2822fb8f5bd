package ipam

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// blockValue is a block as stored, in the shape of Calico's AllocationBlock
// (libcalico-go lib/backend/model/block.go):
//
//   - allocations[o] is an index into attributes, or null when ordinal o is free;
//   - unallocated lists the free ordinals, oldest-freed last-in: allocation
//     takes from the front and release appends, so a released address is the
//     last to be handed out again;
//   - sequenceNumber increases with every allocation and
//     sequenceNumberForAllocation[o] records it, so a release that names the
//     sequence number it saw cannot free an address allocated again since.
type blockValue struct {
	CIDR                        string            `json:"cidr"`
	Affinity                    *string           `json:"affinity"`
	StrictAffinity              bool              `json:"strictAffinity"`
	Allocations                 []*int            `json:"allocations"`
	Unallocated                 []int             `json:"unallocated"`
	Attributes                  []allocAttr       `json:"attributes"`
	Deleted                     bool              `json:"deleted"`
	SequenceNumber              uint64            `json:"sequenceNumber"`
	SequenceNumberForAllocation map[string]uint64 `json:"sequenceNumberForAllocation"`
}

// allocAttr is shared by every ordinal allocated with the same handle and
// attributes (Calico's AllocationAttribute).
type allocAttr struct {
	HandleID  *string           `json:"handle_id"`
	Secondary map[string]string `json:"secondary"`
}

// Keys of allocAttr.Secondary.
const (
	AttrNode        = "node"
	AttrNamespace   = "namespace"
	AttrWorkload    = "workload"
	AttrContainerID = "containerID"
	AttrNetwork     = "network"
	AttrIfName      = "ifname"
	AttrTimestamp   = "timestamp"
	AttrType        = "type"
)

const hostAffinityPrefix = "host:"

// block is a decoded, checked block together with the revision it was read at.
type block struct {
	cidr     netip.Prefix
	affinity string // node name, "" when the block has no affinity
	strict   bool
	alloc    []int // attribute index per ordinal, -1 when free
	free     []int // free ordinals in reuse order
	attrs    []allocAttr
	seq      uint64
	seqFor   []uint64 // sequence number per ordinal (meaningful while allocated)
	deleted  bool
	rev      int64 // datastore revision; 0 before it is stored
}

// newBlock is an empty block affine to node.
func newBlock(cidr netip.Prefix, node string, strict bool) *block {
	n := blockLen(cidr)
	b := &block{cidr: cidr, affinity: node, strict: strict, alloc: make([]int, n), free: make([]int, n), seqFor: make([]uint64, n)}
	for i := range n {
		b.alloc[i] = -1
		b.free[i] = i
	}
	return b
}

// decodeBlock parses and checks a stored block: every inconsistency is an
// error naming the block, so a damaged block is reported, never used.
func decodeBlock(data []byte) (*block, error) {
	var v blockValue
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("decode block: %w", err)
	}
	cidr, err := netip.ParsePrefix(v.CIDR)
	if err != nil {
		return nil, fmt.Errorf("decode block: cidr %q is not a CIDR", v.CIDR)
	}
	if cidr.Masked() != cidr || !validBlockSize(cidr.Addr().Is4(), cidr.Bits()) || cidr.Addr().Zone() != "" || cidr.Addr().Is4In6() {
		return nil, fmt.Errorf("block %s: not a valid block CIDR (IPv4 /%d-/%d, IPv6 /%d-/%d, no host bits)", v.CIDR, MinBlockSize4, MaxBlockSize4, MinBlockSize6, MaxBlockSize6)
	}
	n := blockLen(cidr)
	b := &block{cidr: cidr, strict: v.StrictAffinity, deleted: v.Deleted, seq: v.SequenceNumber, attrs: v.Attributes, seqFor: make([]uint64, n)}
	if v.Affinity != nil {
		node, ok := strings.CutPrefix(*v.Affinity, hostAffinityPrefix)
		if !ok || node == "" {
			return nil, fmt.Errorf("block %s: affinity %q is not host:<node>", cidr, *v.Affinity)
		}
		b.affinity = node
	}
	if len(v.Allocations) != n {
		return nil, fmt.Errorf("block %s: %d allocation slots, want %d", cidr, len(v.Allocations), n)
	}
	b.alloc = make([]int, n)
	nfree := 0
	for o, a := range v.Allocations {
		switch {
		case a == nil:
			b.alloc[o] = -1
			nfree++
		case *a < 0 || *a >= len(v.Attributes):
			return nil, fmt.Errorf("block %s: ordinal %d refers to attribute %d of %d", cidr, o, *a, len(v.Attributes))
		default:
			b.alloc[o] = *a
		}
	}
	if len(v.Unallocated) != nfree {
		return nil, fmt.Errorf("block %s: %d ordinals listed free, but %d are unallocated", cidr, len(v.Unallocated), nfree)
	}
	seen := make([]bool, n)
	for _, o := range v.Unallocated {
		if o < 0 || o >= n || b.alloc[o] != -1 || seen[o] {
			return nil, fmt.Errorf("block %s: ordinal %d is listed free but is out of range, allocated or listed twice", cidr, o)
		}
		seen[o] = true
	}
	b.free = slices.Clone(v.Unallocated)
	for k, s := range v.SequenceNumberForAllocation {
		o, err := strconv.Atoi(k)
		if err != nil || o < 0 || o >= n {
			return nil, fmt.Errorf("block %s: sequence number for ordinal %q out of range", cidr, k)
		}
		b.seqFor[o] = s
	}
	for i, a := range b.attrs {
		if a.HandleID != nil && *a.HandleID == "" {
			return nil, fmt.Errorf("block %s: attribute %d has an empty handle", cidr, i)
		}
	}
	return b, nil
}

// encode serializes the block (dropping attributes no ordinal uses).
func (b *block) encode() []byte {
	b.compact()
	v := blockValue{
		CIDR:                        b.cidr.String(),
		StrictAffinity:              b.strict,
		Allocations:                 make([]*int, len(b.alloc)),
		Unallocated:                 b.free,
		Attributes:                  b.attrs,
		Deleted:                     b.deleted,
		SequenceNumber:              b.seq,
		SequenceNumberForAllocation: make(map[string]uint64, len(b.alloc)-len(b.free)),
	}
	if v.Unallocated == nil {
		v.Unallocated = []int{}
	}
	if v.Attributes == nil {
		v.Attributes = []allocAttr{}
	}
	if b.affinity != "" {
		s := hostAffinityPrefix + b.affinity
		v.Affinity = &s
	}
	for o, a := range b.alloc {
		if a >= 0 {
			a := a
			v.Allocations[o] = &a
		}
	}
	for o, a := range b.alloc {
		if a >= 0 {
			v.SequenceNumberForAllocation[strconv.Itoa(o)] = b.seqFor[o]
		}
	}
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ipam: encode block %s: %v", b.cidr, err)) // plain data: cannot fail
	}
	return data
}

func (b *block) clone() *block {
	c := *b
	c.alloc = slices.Clone(b.alloc)
	c.free = slices.Clone(b.free)
	// Attribute entries are shared: no code changes a Secondary map or a
	// HandleID in place (attrIndex adds new entries, compact moves them).
	c.attrs = slices.Clone(b.attrs)
	c.seqFor = slices.Clone(b.seqFor)
	return &c
}

func (b *block) size() int             { return len(b.alloc) }
func (b *block) numFree() int          { return len(b.free) }
func (b *block) inUse() int            { return len(b.alloc) - len(b.free) }
func (b *block) empty() bool           { return len(b.free) == len(b.alloc) }
func (b *block) family() int           { return familyOf(b.cidr.Addr()) }
func (b *block) key() string           { return blockKey(b.cidr) }
func (b *block) addr(o int) netip.Addr { return ordinalAddr(b.cidr, o) }

// ordinal is a's ordinal in the block, or false when a is outside it.
func (b *block) ordinal(a netip.Addr) (int, bool) { return addrOrdinal(b.cidr, a) }

func (b *block) allocated(o int) bool { return b.alloc[o] >= 0 }

// handleOf is the handle holding ordinal o ("" when free or unnamed).
func (b *block) handleOf(o int) string {
	if i := b.alloc[o]; i >= 0 && b.attrs[i].HandleID != nil {
		return *b.attrs[i].HandleID
	}
	return ""
}

// attrsOf are the secondary attributes of ordinal o (nil when free).
func (b *block) attrsOf(o int) map[string]string {
	if i := b.alloc[o]; i >= 0 {
		return b.attrs[i].Secondary
	}
	return nil
}

// attrIndex finds or adds the attribute entry for handle and attrs.
func (b *block) attrIndex(handle string, attrs map[string]string) int {
	for i, a := range b.attrs {
		if a.HandleID != nil && *a.HandleID == handle && maps.Equal(a.Secondary, attrs) {
			return i
		}
	}
	h := handle
	b.attrs = append(b.attrs, allocAttr{HandleID: &h, Secondary: maps.Clone(attrs)})
	return len(b.attrs) - 1
}

// take allocates up to n free ordinals from the front of the free list
// (the longest-free first) and returns them.
func (b *block) take(n int, handle string, attrs map[string]string) []int {
	n = min(n, len(b.free))
	if n == 0 {
		return nil
	}
	idx := b.attrIndex(handle, attrs)
	got := slices.Clone(b.free[:n])
	b.free = slices.Delete(b.free, 0, n)
	for _, o := range got {
		b.alloc[o] = idx
		b.seqFor[o] = b.seq
		b.seq++
	}
	return got
}

// takeOrdinal allocates a specific free ordinal.
func (b *block) takeOrdinal(o int, handle string, attrs map[string]string) bool {
	i := slices.Index(b.free, o)
	if i < 0 {
		return false
	}
	b.free = slices.Delete(b.free, i, i+1)
	b.alloc[o] = b.attrIndex(handle, attrs)
	b.seqFor[o] = b.seq
	b.seq++
	return true
}

// release frees ordinal o, which goes to the back of the free list.
func (b *block) release(o int) {
	if b.alloc[o] < 0 {
		return
	}
	b.alloc[o] = -1
	b.seqFor[o] = 0
	b.free = append(b.free, o)
}

// ordinalsOf lists the ordinals held by handle.
func (b *block) ordinalsOf(handle string) []int {
	var out []int
	for o := range b.alloc {
		if b.handleOf(o) == handle && b.allocated(o) {
			out = append(out, o)
		}
	}
	return out
}

// compact drops attribute entries no ordinal refers to, renumbering the rest.
func (b *block) compact() {
	used := make([]bool, len(b.attrs))
	for _, a := range b.alloc {
		if a >= 0 {
			used[a] = true
		}
	}
	if !slices.Contains(used, false) {
		return
	}
	remap := make([]int, len(b.attrs))
	var kept []allocAttr
	for i, a := range b.attrs {
		if used[i] {
			remap[i] = len(kept)
			kept = append(kept, a)
		}
	}
	for o, a := range b.alloc {
		if a >= 0 {
			b.alloc[o] = remap[a]
		}
	}
	b.attrs = kept
}

// familyOf is 4 or 6.
func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}
