// Package routing computes what one host must do to route container
// addresses between hosts: the BGP sessions its speaker keeps (node-to-node
// mesh, route reflectors, BGPPeers), the prefixes it advertises (its affine
// blocks and borrowed addresses), the kernel routes it owns (a blackhole per
// own block, VXLAN routes derived from the datastore), the tunnel devices
// (VXLAN, IP-in-IP) and how a route learned over BGP becomes a kernel route.
//
// Desired is pure: it reads an Input (resources and IPAM affinities) and
// returns a Plan, touching no kernel and no network. The kernel subpackage
// programs a KernelState into the kernel (diffing against what is there),
// the bgp subpackage runs the embedded GoBGP speaker, and the router
// subpackage owns the goroutines that tie them to the datastore. Plan.Render
// prints a plan as deterministic text; the golden files in testdata/ are
// that text. docs/design/routing.md describes the rules and invariants.
//
// This package imports internal/api and internal/api/selector only (plus
// the standard library); it must never import netlink, GoBGP, etcd, the
// datastore or internal/agent.
package routing
