package ipam

import (
	"fmt"
	"net/netip"
)

// Reads for the router, which mirrors IPAM with a watch under
// datastore.IPAMPrefix and decodes each changed key with these instead of
// re-reading the whole tree on every allocation.

// Key prefixes of affinities and blocks, for watches.
const (
	AffinityPrefix = hostPrefix
	BlockPrefix    = assignmentPrefix
)

// ParseAffinityKey reads host/<node>/ipvN/block/<cidr>.
func ParseAffinityKey(key string) (node string, cidr netip.Prefix, err error) {
	return parseAffinityKey(key)
}

// ParseAffinity reads an affinity key and value: the node, the block and
// whether the claim is confirmed (pending claims are not routed).
func ParseAffinity(key string, value []byte) (node string, cidr netip.Prefix, confirmed bool, err error) {
	node, cidr, err = parseAffinityKey(key)
	if err != nil {
		return "", netip.Prefix{}, false, err
	}
	a, err := decodeAffinity(value)
	if err != nil {
		return "", netip.Prefix{}, false, fmt.Errorf("affinity %s of %s: %w", cidr, node, err)
	}
	return node, cidr, a.State == StateConfirmed && !a.Deleted, nil
}

// ParseBlockKey reads assignment/ipvN/block/<cidr>.
func ParseBlockKey(key string) (netip.Prefix, error) { return parseBlockKey(key) }

// BlockOwners is what routing needs from one block.
type BlockOwners struct {
	CIDR netip.Prefix
	// Node is the block's affinity ("" when it has none).
	Node string
	// Borrowed maps each address allocated to a node other than Node to
	// that node.
	Borrowed map[netip.Addr]string
}

// ParseBlock reads a block key and value. A block marked deleted has no
// owner and no borrowed addresses.
func ParseBlock(key string, value []byte) (BlockOwners, error) {
	cidr, err := parseBlockKey(key)
	if err != nil {
		return BlockOwners{}, err
	}
	b, err := decodeBlock(value)
	if err != nil {
		return BlockOwners{}, err
	}
	if b.cidr != cidr {
		return BlockOwners{}, fmt.Errorf("block %s stored under the key of %s", b.cidr, cidr)
	}
	out := BlockOwners{CIDR: cidr}
	if b.deleted {
		return out, nil
	}
	out.Node = b.affinity
	for o := range b.alloc {
		if !b.allocated(o) {
			continue
		}
		if n := b.attrsOf(o)[AttrNode]; n != "" && n != b.affinity {
			if out.Borrowed == nil {
				out.Borrowed = map[netip.Addr]string{}
			}
			out.Borrowed[b.addr(o)] = n
		}
	}
	return out, nil
}
