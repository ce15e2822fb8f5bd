// Package nft programs a policy.Ruleset into the kernel with
// google/nftables: one table `inet tabby`, never any other. Driver.Apply
// diffs the ruleset against what the kernel holds and commits the
// difference as one atomic transaction: new and removed set and map
// elements one by one, whole chains only when their rules changed. It
// notices changes made by anyone else (through the nftables ruleset
// generation) and repairs them on the next Apply.
//
// It imports google/nftables, mdlayher/netlink, vishvananda/netlink (for
// conntrack) and internal/agent/policy; it must not import the datastore,
// the agent or any CNI package.
package nft
