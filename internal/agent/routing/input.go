package routing

import (
	"net/netip"

	"github.com/tabbynet/tabby/internal/api"
)

// Input is everything Desired needs: the cluster's resources as the agent
// sees them, and the IPAM state the router mirrors.
type Input struct {
	// Node is this host's name; NodeIP its IPv4 address with the subnet
	// length (the subnet decides CrossSubnet encapsulation). When NodeIP
	// is invalid, the Node resource's spec.bgp.ipv4Address is used.
	Node   string
	NodeIP netip.Prefix

	Nodes     []*api.Node
	Pools     []*api.IPPool
	BGPConfig api.BGPConfigurationSpec
	Peers     []*api.BGPPeer
	// Felix carries the tunnel settings Calico keeps there (vxlanVNI,
	// vxlanPort, vxlanMTU, ipipMTU).
	Felix api.FelixConfigurationSpec

	// Blocks are every node's confirmed affine blocks (pending claims are
	// not routed).
	Blocks []BlockAffinity
	// Borrowed are the addresses nodes hold in blocks affine to another
	// node: each is routed as a /32 (/128) to the node holding it.
	Borrowed []BorrowedAddr

	// DisableBGP runs no BGP speaker: only datastore-derived routes
	// (blackholes, VXLAN) are kept.
	DisableBGP bool
}

// BlockAffinity is one block confirmed affine to a node.
type BlockAffinity struct {
	Node string
	CIDR netip.Prefix
}

// BorrowedAddr is an address Node holds in a block affine to another node.
type BorrowedAddr struct {
	Node string
	Addr netip.Addr
}
