// Package version is the build's version, shared by the tabby and
// tabby-cni binaries so that `tabby version` and `tabby-cni --version`
// always agree. The Makefile sets it with one linker flag:
//
//	-ldflags "-X github.com/tabbynet/tabby/internal/version.Version=v1.2.3"
//
// It imports only the standard library, and the plugin links it, so it
// must stay that small.
package version

import "runtime/debug"

// Version is set at build time; empty in a plain `go build`.
var Version = ""

// String is Version, else the module version recorded by `go install
// module@version`, else "dev".
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
