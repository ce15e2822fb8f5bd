// Package layers holds no code: its test is Tabby's one dependency rule
// (DESIGN.md §4). The pure halves (api, selector, policy compile, routing
// compute, DNS records) and IPAM link no kernel, BGP or etcd code, and
// cmd/tabby-cni links no etcd, GoBGP or nftables, so the plugin starts in
// a few milliseconds. The test reads `go list -deps` and fails (never
// skips) when it cannot.
//
// It must not import anything: nothing may depend on it.
package layers
