package ctl

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Where `tabby node install --systemd` puts things, under --root.
const (
	systemdUnitDir  = "/etc/systemd/system"
	tabbyEnvDir     = "/etc/tabby"
	tabbyBinaryPath = "/usr/local/bin/tabby"
	datastoreDir    = "/var/lib/tabby/etcd"
)

// systemdOptions are what the units are written from.
type systemdOptions struct {
	datastore, etcdCA, etcdCert, etcdKey string
	node                                 string
	withDatastore, withDNS               bool
}

// unitNames are the units install may write, in uninstall's order.
var unitNames = []string{"tabby-dns.service", "tabby-agent.service", "tabby-datastore.service"}

// systemdFiles renders the units and their environment files: path
// (relative to the root) → content. It is pure.
func systemdFiles(o systemdOptions) map[string]string {
	files := map[string]string{}
	env := map[string]string{"TABBY_DATASTORE": o.datastore, "TABBY_ETCD_CA": o.etcdCA,
		"TABBY_ETCD_CERT": o.etcdCert, "TABBY_ETCD_KEY": o.etcdKey}
	files[filepath.Join(tabbyEnvDir, "datastore.env")] = envFile("Datastore endpoints and TLS of every Tabby service.", env)
	files[filepath.Join(tabbyEnvDir, "agent.env")] = envFile("The agent's own settings; TABBY_AGENT_ARGS are extra flags of `tabby agent`.",
		map[string]string{"TABBY_NODE": o.node, "TABBY_AGENT_ARGS": ""})
	after := "network-online.target"
	if o.withDatastore {
		after += " tabby-datastore.service"
		files[filepath.Join(systemdUnitDir, "tabby-datastore.service")] = unit("Tabby datastore (embedded etcd)", "network-online.target",
			[]string{"EnvironmentFile=-" + filepath.Join(tabbyEnvDir, "datastore.env")},
			tabbyBinaryPath+" datastore run --data-dir "+datastoreDir+" $TABBY_DATASTORE_ARGS")
	}
	files[filepath.Join(systemdUnitDir, "tabby-agent.service")] = unit("Tabby node agent (CNI, IPAM, routing, policy)", after,
		[]string{"EnvironmentFile=" + filepath.Join(tabbyEnvDir, "datastore.env"), "EnvironmentFile=" + filepath.Join(tabbyEnvDir, "agent.env")},
		tabbyBinaryPath+" agent $TABBY_AGENT_ARGS")
	if o.withDNS {
		files[filepath.Join(systemdUnitDir, "tabby-dns.service")] = unit("Tabby DNS (Mesos-DNS names of containers)", after,
			[]string{"EnvironmentFile=" + filepath.Join(tabbyEnvDir, "datastore.env")},
			tabbyBinaryPath+" dns $TABBY_DNS_ARGS")
	}
	return files
}

func unit(desc, after string, env []string, exec string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by tabby node install; tabby node uninstall removes it.\n[Unit]\nDescription=%s\n", desc)
	fmt.Fprintf(&b, "Wants=network-online.target\nAfter=%s\n\n[Service]\nType=simple\n", after)
	for _, e := range env {
		b.WriteString(e + "\n")
	}
	fmt.Fprintf(&b, "ExecStart=%s\nRestart=always\nRestartSec=2\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n", exec)
	return b.String()
}

func envFile(comment string, vars map[string]string) string {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# " + comment + "\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, vars[k])
	}
	return b.String()
}

// writeSystemd installs the tabby binary and writes the units and
// environment files under root; it returns the paths written.
func writeSystemd(root, tabbyBin string, o systemdOptions) ([]string, error) {
	if tabbyBin == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the tabby binary: %w", err)
		}
		tabbyBin = self
	}
	dst := filepath.Join(root, tabbyBinaryPath)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, err
	}
	if src, _ := filepath.EvalSymlinks(tabbyBin); src != dst {
		if err := copyAtomic(tabbyBin, dst, installedPluginPerms); err != nil {
			return nil, fmt.Errorf("install %s: %w", dst, err)
		}
	}
	written := []string{dst}
	files := systemdFiles(o)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return nil, err
		}
		perm := os.FileMode(0o644)
		if strings.HasSuffix(p, ".env") {
			perm = 0o600 // may name key files
		}
		if err := writeAtomic(full, []byte(files[p]), perm); err != nil {
			return nil, fmt.Errorf("write %s: %w", full, err)
		}
		written = append(written, full)
	}
	return written, nil
}
