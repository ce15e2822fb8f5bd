// Package api defines Tabby's resources: their Go types, Calico v3 compatible
// field names, defaults, validation and decoding from YAML or JSON manifests.
//
// It imports the standard library only (and sigs.k8s.io/yaml for decoding);
// it must never import netlink, nftables, GoBGP, etcd or any other Tabby
// package except its own subpackages.
package api
