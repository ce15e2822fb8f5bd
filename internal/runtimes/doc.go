// Package runtimes holds the tests that run real container runtimes
// (Debian's podman with its CNI backend, containerd with `ctr run --cni`)
// against real Tabby agents, each runtime with private storage, config,
// CNI and run directories inside a test host's network namespace. The
// how-to in docs/runtimes.md is what these tests run. It has no code
// outside its tests.
package runtimes
