// Package routinglab holds the routing tests and benchmarks that run on a
// whole lab (internal/lab): real agents in host namespaces, containers
// attached through tabby-cni, real traffic between them, BIRD 2 as a
// top-of-rack router. It has no code besides its tests; they need root
// and are skipped with -short.
//
// Only tests import it; it must not be imported by production code.
package routinglab
