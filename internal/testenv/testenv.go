// Package testenv decides whether a test can run on this machine, in one
// place. Without root or without a tool it execs, a test fails and names
// the Debian package to install (scripts/deps.txt lists them all; `make
// deps` installs them); only -short skips. So a green full run means every
// suite ran. Tests only: it imports testing and nothing of Tabby's.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// CNIPluginDir is where Debian's containernetworking-plugins installs the
// reference plugins (ptp, host-local, ...).
const CNIPluginDir = "/usr/lib/cni"

// packages maps each external program the tests run to the Debian package
// that provides it. Every package named here is in scripts/deps.txt
// (TestPackagesAreInDepsList).
var packages = map[string]string{
	"ip":               "iproute2",
	"ss":               "iproute2",
	"bridge":           "iproute2",
	"ping":             "iputils-ping",
	"sysctl":           "procps",
	"nft":              "nftables",
	"systemd-analyze":  "systemd",
	"iptables-restore": "iptables",
	"bird":             "bird2",
	"birdc":            "bird2",
	"iperf3":           "iperf3",
	"dig":              "dnsutils",
	"dnsperf":          "dnsperf",
	"dnsmasq":          "dnsmasq-base",
	"unshare":          "util-linux",
	"nsenter":          "util-linux",
	"podman":           "podman",
	"containerd":       "containerd",
	"ctr":              "containerd",
	"busybox":          "busybox-static",
	"runc":             "runc",
	"chromium":         "chromium",
	CNIPluginDir:       "containernetworking-plugins",
}

// hint is the fix for a missing package.
func hint(pkg string) string {
	return fmt.Sprintf("apt-get install %s (or run `make deps` as root)", pkg)
}

// Privileged is the gate of a privileged test too heavy for -short (labs,
// clusters): it skips under -short, then requires root like NeedRoot.
func Privileged(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("privileged test: skipped with -short")
	}
	NeedRoot(t)
}

// NeedRoot requires root (network namespaces, nftables, raw sockets).
// Without it the test is skipped under -short and fails otherwise: a full
// run that cannot run its privileged tests is not a pass.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	const why = "needs root (network namespaces): run it as root (sudo make test), or with -short (make test-short) to skip privileged tests"
	if testing.Short() {
		t.Skip(why)
	}
	t.Fatal(why)
}

// NeedTool requires the program name on PATH and returns its path.
// Missing, the test is skipped under -short and fails otherwise, naming
// the Debian package that provides it.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	pkg := packageOf(t, name)
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	missing(t, fmt.Sprintf("%s is not installed: %s", name, hint(pkg)))
	return ""
}

// NeedTools is NeedTool for each name.
func NeedTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		NeedTool(t, n)
	}
}

// NeedCNIPlugins requires Debian's reference CNI plugins names in
// CNIPluginDir and returns the directory, as NeedTool does for programs.
func NeedCNIPlugins(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names {
		p := filepath.Join(CNIPluginDir, n)
		if _, err := os.Stat(p); err != nil {
			missing(t, fmt.Sprintf("the CNI plugin %s is not installed: %s", p, hint(packageOf(t, CNIPluginDir))))
		}
	}
	return CNIPluginDir
}

// missing skips t under -short and fails it otherwise.
func missing(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why)
	}
	t.Fatal(why)
}

// packageOf is the Debian package providing name; an unknown name is a
// mistake in the test.
func packageOf(t testing.TB, name string) string {
	t.Helper()
	pkg, ok := packages[name]
	if !ok {
		t.Fatalf("testenv: no Debian package known for %q: add it to testenv.packages and scripts/deps.txt", name)
	}
	return pkg
}
