// Package ipam hands out container addresses from IP pools without a central
// allocator: each host claims blocks (default /26 for IPv4, /122 for IPv6)
// from the pools and allocates from its own blocks, so hosts rarely touch
// the same datastore key. It is Calico's IPAM design, kept in Calico's etcd
// shapes (blocks, affinities, handles) under datastore.IPAMPrefix.
//
// Every write is a compare-and-swap through datastore.Store.Txn, retried a
// bounded number of times (datastore.MaxRetries); the common allocation is a
// single transaction that updates the block and creates the handle together.
// The invariants each write protects, and the tests that try to break them,
// are listed in docs/design/ipam.md.
//
// This package imports internal/api (and its selector) and
// internal/datastore. It must not import etcd, netlink, nftables, GoBGP or
// any agent, CNI or CLI package: those call it.
package ipam
