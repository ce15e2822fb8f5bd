package ctl

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/tabbynet/tabby/internal/version"
)

// TestVersionReportsCluster: the GUID is created once (even by racing
// clients) and agents are listed per node with the version they publish.
func TestVersionReportsCluster(t *testing.T) {
	c := newCLI(t)
	c.stdin = "apiVersion: tabby.dev/v1\nkind: Node\nmetadata: {name: node-a}\nspec: {}\nstatus: {agentVersion: v1.2.3, lastHeartbeat: '2026-01-01T00:00:00Z'}\n---\n" +
		"apiVersion: tabby.dev/v1\nkind: Node\nmetadata: {name: node-b}\nspec: {}\n"
	c.ok("apply", "-f", "-")
	guid := regexp.MustCompile(`Cluster GUID: +([0-9a-f]{32})\n`)
	var wg sync.WaitGroup
	outs := make([]string, 4)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, outs[i], _ = (&cli{t: t, ds: c.ds}).run("version")
		}()
	}
	wg.Wait()
	first := guid.FindStringSubmatch(outs[0])
	if first == nil {
		t.Fatalf("no cluster GUID in:\n%s", outs[0])
	}
	for _, o := range outs[1:] {
		if m := guid.FindStringSubmatch(o); m == nil || m[1] != first[1] {
			t.Fatalf("racing version calls saw different GUIDs:\n%s\n%s", outs[0], o)
		}
	}
	out := c.ok("version")
	for _, w := range []string{"Client Version:    " + version.String(), "Cluster GUID:      " + first[1], "Cluster Type:      " + DefaultClusterType, "Datastore:         etcd 3.",
		"node-a  v1.2.3", "2026-01-01T00:00:00Z", "node-b  (no agent has reported)"} {
		if !strings.Contains(out, w) {
			t.Errorf("version lacks %q:\n%s", w, out)
		}
	}
	if j := c.ok("version", "-o", "json"); !strings.Contains(j, `"clusterGUID": "`+first[1]+`"`) {
		t.Errorf("version -o json:\n%s", j)
	}
	off := &cli{t: t, ds: "http://127.0.0.1:1"}
	if out := off.ok("version", "--client"); strings.TrimSpace(out) != "Client Version:    "+version.String() {
		t.Errorf("version --client: %q", out)
	}
}

func TestCheckSystemReport(t *testing.T) {
	rs := []checkResult{
		{check: kernelCheck{name: "nf_tables", usedFor: "policy", required: true}, detail: "operation not supported"},
		{check: kernelCheck{name: "vxlan", usedFor: "VXLAN pools"}, ok: true},
		{check: kernelCheck{name: "ipip", usedFor: "IP-in-IP pools"}, detail: "operation not supported"},
	}
	var out bytes.Buffer
	err := reportChecks(&out, "6.1.0", rs)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("a missing required feature: %v, want exit 1", err)
	}
	for _, w := range []string{"nf_tables  MISSING ", "vxlan      OK", "ipip       MISSING (warning)", "1 error(s), 1 warning(s)"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	if err := reportChecks(&out, "6.1.0", rs[1:]); err != nil {
		t.Fatalf("only warnings: %v, want exit 0", err)
	}
}
