package layers

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tabbynet/tabby/"

// heavy are the libraries the rule is about: each rule also names which of
// them it forbids, so a violation says what matters, not only "not allowed".
var (
	etcd     = []string{"go.etcd.io/"}
	gobgp    = []string{"github.com/osrg/gobgp"}
	nftables = []string{"github.com/google/nftables"}
	netlink  = []string{"github.com/vishvananda/netlink", "github.com/mdlayher/netlink"}
	dnslib   = []string{"github.com/miekg/dns"}
)

// yaml is what internal/api decodes manifests with.
var yaml = []string{"sigs.k8s.io/yaml", "go.yaml.in/yaml/"}

// apiDeps is internal/api with its selector parser.
var apiDeps = append([]string{module + "internal/api"}, yaml...)

type rule struct {
	pkg string // relative to the module
	// allow lists the only non-standard-library dependencies (import-path
	// prefixes; a module path ending in a package name also allows its
	// subpackages). The package itself is always allowed.
	allow []string
	// forbid are dependencies named in the error when present (they are
	// outside allow too); forbidStd are standard packages not allowed.
	forbid    [][]string
	forbidStd []string
	// mustHave is a dependency that proves go list read the right package.
	mustHave string
}

var rules = []rule{
	{pkg: "internal/api/selector", forbid: [][]string{etcd, gobgp, nftables, netlink}},
	{pkg: "internal/api", allow: append([]string{module + "internal/api/selector"}, yaml...), forbid: [][]string{etcd, gobgp, nftables, netlink}, mustHave: module + "internal/api/selector"},
	{pkg: "internal/ipam", allow: append([]string{module + "internal/datastore="}, apiDeps...),
		forbid: [][]string{etcd, gobgp, nftables, netlink}, mustHave: module + "internal/datastore"},
	{pkg: "internal/agent/policy", allow: apiDeps, forbid: [][]string{etcd, gobgp, nftables, netlink, {"golang.org/x/sys"}},
		mustHave: module + "internal/api"},
	{pkg: "internal/agent/routing", allow: apiDeps, forbid: [][]string{etcd, gobgp, nftables, netlink}, mustHave: module + "internal/api"},
	{pkg: "internal/dns/records", allow: append([]string{module + "internal/dns/mesos"}, apiDeps...),
		forbid: [][]string{etcd, gobgp, nftables, netlink, dnslib}, forbidStd: []string{"net/http"}, mustHave: module + "internal/dns/mesos"},
	{pkg: "internal/dns/mesos", forbid: [][]string{etcd, gobgp, nftables, netlink, dnslib}, forbidStd: []string{"net/http"}},
	{pkg: "cmd/tabby-cni", allow: []string{
		module + "internal/cni", module + "internal/version",
		"github.com/containernetworking/cni/pkg/", // skel, types, version, ns
		"github.com/vishvananda/netns",            // via cni/pkg/ns: namespaces only, no netlink
		"golang.org/x/sys/unix",
	}, forbid: [][]string{etcd, gobgp, nftables, netlink}, mustHave: module + "internal/cni"},
}

// TestDependencyRules checks every rule against `go list -deps`.
func TestDependencyRules(t *testing.T) {
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			deps := listDeps(t, module+r.pkg)
			if r.mustHave != "" && deps[r.mustHave] == nil {
				t.Fatalf("go list -deps %s does not list %s; is the rule looking at the right package?", r.pkg, r.mustHave)
			}
			bad := map[string]string{}
			for d, info := range deps {
				if why := r.violation(d, info.standard); why != "" {
					bad[d] = why
				}
			}
			// Report where the rule is first broken: a bad dependency
			// imported by a package that is itself fine, not everything
			// a forbidden library drags in after it.
			// And name each forbidden library once, by its shortest path.
			forbidden := map[string]string{} // reason → chain
			for _, d := range sortedKeys(bad) {
				c := chain(deps, module+r.pkg, d)
				if importedByGood(deps, bad, d) {
					t.Errorf("%s depends on %s (%s), imported via %s", r.pkg, d, bad[d], c)
				}
				if strings.HasPrefix(bad[d], "forbidden: ") {
					if old, ok := forbidden[bad[d]]; !ok || len(c) < len(old) {
						forbidden[bad[d]] = c
					}
				}
			}
			for _, why := range sortedKeys(forbidden) {
				t.Errorf("%s links %s via %s", r.pkg, strings.TrimPrefix(why, "forbidden: "), forbidden[why])
			}
		})
	}
}

func (r rule) violation(dep string, standard bool) string {
	if standard {
		if slices.Contains(r.forbidStd, dep) {
			return "forbidden standard package"
		}
		return ""
	}
	for _, group := range r.forbid {
		for _, f := range group {
			if strings.HasPrefix(dep, f) {
				return "forbidden: " + f
			}
		}
	}
	if dep == module+r.pkg {
		return ""
	}
	for _, a := range r.allow {
		if exact, ok := strings.CutSuffix(a, "="); ok {
			if dep == exact {
				return ""
			}
			continue
		}
		if dep == a || strings.HasPrefix(dep, strings.TrimSuffix(a, "/")+"/") {
			return ""
		}
	}
	return "not in the allowed list"
}

type pkgInfo struct {
	standard bool
	imports  []string
}

// listDeps runs go list -deps on pkg; it fails the test, never skips it,
// when go list cannot run.
func listDeps(t *testing.T, pkg string) map[string]*pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{.Standard}} {{join .Imports " "}}`, pkg).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %s (the dependency rules cannot be checked without go list)", pkg, msg)
	}
	deps := map[string]*pkgInfo{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			t.Fatalf("go list -deps %s: unexpected line %q", pkg, line)
		}
		deps[f[0]] = &pkgInfo{standard: f[1] == "true", imports: f[2:]}
	}
	if deps[pkg] == nil {
		t.Fatalf("go list -deps %s did not list the package itself", pkg)
	}
	return deps
}

// importedByGood reports whether a package outside bad imports dep.
func importedByGood(deps map[string]*pkgInfo, bad map[string]string, dep string) bool {
	for p, info := range deps {
		if _, isBad := bad[p]; !isBad && slices.Contains(info.imports, dep) {
			return true
		}
	}
	return false
}

// chain is one import path from root to dep, for the error message.
func chain(deps map[string]*pkgInfo, root, dep string) string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == dep {
			var path []string
			for ; p != ""; p = prev[p] {
				path = append(path, strings.TrimPrefix(p, module))
			}
			slices.Reverse(path)
			return strings.Join(path, " → ")
		}
		if deps[p] == nil {
			continue
		}
		for _, imp := range deps[p].imports {
			if _, seen := prev[imp]; !seen {
				prev[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return fmt.Sprintf("(no path from %s)", root)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
