// Package api defines Tabby's resources: their Go types, Calico v3 compatible
// field names, defaults, validation, and decoding from and encoding to YAML
// or JSON manifests.
//
//   - kinds.go, values.go, meta.go, registry.go: the types and the kind table.
//   - SetDefaults fills in Calico's defaults; accessors such as
//     (*BGPConfigurationSpec).MeshEnabled give effective values.
//   - Validate checks one resource and returns FieldErrors, every problem
//     with its field path; ValidateUpdate checks what may not change.
//   - Decode reads multi-document YAML, JSON and Lists strictly (unknown
//     fields are errors) and returns *DecodeError naming the document.
//   - Encode writes YAML or JSON, always with secrets redacted.
//
// It imports the standard library, sigs.k8s.io/yaml and its own subpackage
// selector only; it must never import netlink, nftables, GoBGP, etcd or any
// other Tabby package.
package api
