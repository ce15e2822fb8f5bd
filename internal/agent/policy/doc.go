// Package policy compiles Tabby's network policy — workload and host
// endpoints, profiles, (global) network policies, (global) network sets, IP
// pools and the Felix settings — into the ruleset of one host: the chains,
// named sets and verdict maps of the nftables table `inet tabby`.
//
// Compile is pure: it reads a State and returns a Ruleset, touching no kernel.
// The nft subpackage turns a Ruleset into netlink messages and keeps the
// kernel in step with it. Ruleset.Render prints the ruleset as deterministic
// nft-like text; the golden files in testdata/ are that text.
//
// The compiled layout, the evaluation order (which follows Calico's Felix)
// and the invariants are described in docs/design/policy.md.
//
// This package imports internal/api and internal/api/selector only (plus the
// standard library); it must never import netlink, nftables, GoBGP, etcd or
// the datastore.
package policy
