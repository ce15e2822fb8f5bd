package ctl

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

// TestPrivilegedVersionAndDiags runs version and node diags against a
// running agent: version lists the node with the agent's version, and the
// archive holds every part with the node's real state in it.
func TestPrivilegedVersionAndDiags(t *testing.T) {
	testenv.Privileged(t)
	c := agenttest.NewCluster(t, "10.79.0.0/16")
	h := c.StartHost("node1", "10.202.0.1/24")
	ct := h.Attach("net1")

	out := (&cli{t: t, ds: c.EtcdURL}).ok("version")
	if !strings.Contains(out, "node1  "+agent.Version) || !strings.Contains(out, "Cluster GUID:") {
		t.Fatalf("version does not list node1's agent:\n%s", out)
	}

	archive := filepath.Join(t.TempDir(), "diags.tar.gz")
	cmd := exec.Command("ip", "netns", "exec", h.NS, filepath.Join(c.Bin, "tabby"), "node", "diags",
		"--agent-http", "127.0.0.1:9099", "--agent-log", h.Log, "-o", archive)
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "Diagnostics written to "+archive) || strings.Contains(string(b), "not collected") {
		t.Fatalf("node diags: %v\n%s", err, b)
	}
	parts := readArchive(t, archive)
	wep := endpointOf(t, c, ct.ID)
	want := map[string]string{
		"README.txt":            "bgp/status.json",
		"version.txt":           "tabby ",
		"agent/agent.log":       "container attached",
		"agent/cache.json":      wep.Name,
		"agent/metrics.txt":     "tabby_",
		"bgp/status.json":       "{",
		"nftables/ruleset.txt":  "table inet tabby",
		"network/routes.txt":    ct.IP().String() + " dev " + wep.Spec.InterfaceName,
		"network/addresses.txt": "10.202.0.1/24",
		"network/rules.txt":     "lookup main",
	}
	for name, w := range want {
		body, ok := parts[name]
		if !ok {
			t.Errorf("archive lacks %s (has %v)", name, keys(parts))
			continue
		}
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q:\n%.600s", name, w, body)
		}
	}
	var dump struct{ Node string }
	if err := json.Unmarshal([]byte(parts["agent/cache.json"]), &dump); err != nil || dump.Node != "node1" {
		t.Errorf("cache.json: node %q, %v", dump.Node, err)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(parts["bgp/status.json"]), &st); err != nil {
		t.Errorf("bgp/status.json is not JSON: %v", err)
	}
}

// readArchive returns the files of a diags archive by their path under the
// top directory.
func readArchive(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(h.Name, "/")
		if !ok || !strings.HasPrefix(h.Name, "tabby-diags-") {
			t.Fatalf("archive entry %q is not under tabby-diags-<host>-<time>/", h.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[rest] = string(b)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestPrivilegedCheckSystem probes this kernel and agrees with iproute2
// about IP-in-IP.
func TestPrivilegedCheckSystem(t *testing.T) {
	testenv.Privileged(t)
	c := &cli{t: t, ds: "http://127.0.0.1:1"}
	out := c.ok("node", "checksystem")
	if !strings.Contains(out, "nf_tables  OK") {
		t.Fatalf("nf_tables not found on a kernel that runs nftables:\n%s", out)
	}
	ns := agenttest.RandName("tcs")
	if _, err := netns.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Delete(ns) })
	ipipOK := exec.Command("ip", "-n", ns, "link", "add", "t0", "type", "ipip").Run() == nil
	if got := strings.Contains(out, "ipip       OK"); got != ipipOK {
		t.Fatalf("checksystem says ipip OK=%v, iproute2 says %v:\n%s", got, ipipOK, out)
	}
	if !ipipOK && !strings.Contains(out, "ipip       MISSING (warning)") {
		t.Fatalf("missing ipip is not reported as a warning:\n%s", out)
	}
}
