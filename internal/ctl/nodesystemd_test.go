package ctl

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/testenv"
)

// installRoot runs `tabby node install --systemd --root` into a fresh
// directory and returns it.
func installRoot(t *testing.T, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	plugin := filepath.Join(dir, "tabby-cni")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	var out, errb bytes.Buffer
	args := append([]string{"--datastore", "https://10.0.0.1:2379", "--etcd-ca", "/etc/tabby/ca.pem", "node", "install",
		"--systemd", "--root", root, "--plugin", plugin, "--tabby-binary", plugin, "--node", "host-1"}, extra...)
	if code := Main(args, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("install: exit %d: %s", code, errb.String())
	}
	return root
}

// TestNodeInstallSystemd: the units and environment files written under
// --root pass systemd-analyze verify (given the system's own units, which
// they depend on), restart, order after network-online and read the
// datastore settings from /etc/tabby/datastore.env.
func TestNodeInstallSystemd(t *testing.T) {
	root := installRoot(t, "--with-datastore", "--with-dns")
	for _, want := range []string{
		"etc/systemd/system/tabby-agent.service", "etc/systemd/system/tabby-datastore.service", "etc/systemd/system/tabby-dns.service",
		"etc/tabby/datastore.env", "etc/tabby/agent.env", "usr/local/bin/tabby", "opt/cni/bin/tabby", "etc/cni/net.d/10-tabby.conflist",
	} {
		if _, err := os.Stat(filepath.Join(root, want)); err != nil {
			t.Errorf("install --root: %s missing: %v", want, err)
		}
	}
	agent, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/tabby-agent.service"))
	for _, want := range []string{"Restart=always", "After=network-online.target tabby-datastore.service", "Wants=network-online.target",
		"EnvironmentFile=/etc/tabby/datastore.env", "ExecStart=/usr/local/bin/tabby agent $TABBY_AGENT_ARGS"} {
		if !strings.Contains(string(agent), want) {
			t.Errorf("tabby-agent.service lacks %q:\n%s", want, agent)
		}
	}
	env, _ := os.ReadFile(filepath.Join(root, "etc/tabby/datastore.env"))
	for _, want := range []string{"TABBY_DATASTORE=https://10.0.0.1:2379", "TABBY_ETCD_CA=/etc/tabby/ca.pem"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("datastore.env lacks %q:\n%s", want, env)
		}
	}
	if st, err := os.Stat(filepath.Join(root, "etc/tabby/datastore.env")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("datastore.env mode %v, %v; want 0600", st.Mode(), err)
	}
	analyze := testenv.NeedTool(t, "systemd-analyze")
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd")+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy the system units: %v: %s", err, out)
	}
	out, err := exec.Command(analyze, "verify", "--root="+root, "tabby-agent.service", "tabby-datastore.service", "tabby-dns.service").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestNodeUninstallFiles: uninstall --root --files-only removes every file
// install wrote and leaves the root as it was (empty directories aside).
func TestNodeUninstallFiles(t *testing.T) {
	root := installRoot(t, "--with-dns")
	var out, errb bytes.Buffer
	if code := Main([]string{"node", "uninstall", "--root", root, "--files-only"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("uninstall: exit %d: %s", code, errb.String())
	}
	var left []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("uninstall left %v", left)
	}
	// Twice is fine: what is gone is not an error.
	if code := Main([]string{"node", "uninstall", "--root", root, "--files-only"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("second uninstall: exit %d: %s", code, errb.String())
	}
	if code := Main([]string{"node", "uninstall", "--root", "relative/dir"}, strings.NewReader(""), &out, &errb); code == 0 || !strings.Contains(errb.String(), `"relative/dir"`) {
		t.Errorf("uninstall --root relative/dir: exit %d, %q; want an error naming it", code, errb.String())
	}
}
