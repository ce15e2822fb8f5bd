package ctl

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/lab/labtest"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

// TestPrivilegedNodeUninstall: in a private network namespace holding what
// an agent makes (a workload veth, vxlan.tabby, routes of proto 84 and 85,
// the table inet tabby) and what it does not (another link and route),
// uninstall removes Tabby's and leaves the rest; the files go from --root.
func TestPrivilegedNodeUninstall(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip", "nft")
	name := labtest.Name("tbyun")
	path, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Error(err)
		}
	})
	sh := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
		return string(out)
	}
	sh("ip", "link", "add", "tby1234", "type", "veth", "peer", "name", "cont0")
	// veth pairs stand in for the VXLAN device and another link (no
	// dummy module needed); uninstall goes by name.
	sh("ip", "link", "add", "vxlan.tabby", "type", "veth", "peer", "name", "vxpeer0")
	sh("ip", "link", "add", "keep0", "type", "veth", "peer", "name", "keep1")
	for _, l := range []string{"tby1234", "vxlan.tabby", "keep0", "cont0", "vxpeer0", "keep1"} {
		sh("ip", "link", "set", l, "up")
	}
	sh("ip", "route", "add", "10.48.0.5/32", "dev", "tby1234", "proto", "84", "scope", "link")
	sh("ip", "route", "add", "10.48.1.0/26", "dev", "keep0", "proto", "85")
	sh("ip", "route", "add", "192.0.2.0/24", "dev", "keep0", "proto", "static")
	sh("nft", "add", "table", "inet", "tabby")
	sh("nft", "add", "table", "inet", "other")

	root := installRoot(t)
	var out, errb bytes.Buffer
	var code int
	if err := netns.Do(path, func() error {
		code = Main([]string{"node", "uninstall", "--root", root}, strings.NewReader(""), &out, &errb)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("uninstall: exit %d: %s%s", code, out.String(), errb.String())
	}
	links := sh("ip", "-o", "link", "show")
	for _, gone := range []string{"tby1234", "cont0", "vxlan.tabby", "vxpeer0"} {
		if strings.Contains(links, gone) {
			t.Errorf("link %s is left:\n%s", gone, links)
		}
	}
	if !strings.Contains(links, "keep0") {
		t.Errorf("keep0 (not Tabby's) was removed:\n%s", links)
	}
	routes := sh("ip", "route", "show", "table", "all")
	if strings.Contains(routes, "10.48.") {
		t.Errorf("Tabby's routes are left:\n%s", routes)
	}
	if !strings.Contains(routes, "192.0.2.0/24") {
		t.Errorf("the static route was removed:\n%s", routes)
	}
	tables := sh("nft", "list", "tables")
	if strings.Contains(tables, "inet tabby") || !strings.Contains(tables, "inet other") {
		t.Errorf("nft tables after uninstall:\n%s", tables)
	}
}
