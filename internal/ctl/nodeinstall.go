package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/agent"
)

// nodeSubcommands are added to `tabby node` by other files (status, …).
var nodeSubcommands []func(*globals) *cobra.Command

func newNodeCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Set up and inspect this node"}
	cmd.AddCommand(newNodeInstallCommand(g))
	for _, f := range nodeSubcommands {
		cmd.AddCommand(f(g))
	}
	return cmd
}

// Default locations of CNI plugins and configs, for most runtimes and for
// DC/OS (Mesos' --network_cni_plugins_dir and --network_cni_config_dir).
const (
	defaultCNIBinDir     = "/opt/cni/bin"
	defaultCNIConfDir    = "/etc/cni/net.d"
	dcosCNIBinDir        = "/opt/mesosphere/active/cni"
	dcosCNIConfDir       = "/opt/mesosphere/etc/dcos/network/cni"
	defaultNetworkName   = "tabby"
	networkNamePattern   = `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`
	installedPluginPerms = 0o755
)

type installOptions struct {
	binDir, confDir, network, socket, plugin string
	mesos                                    bool
	mtu                                      int
	nameservers                              []string
	// root prefixes every path written (--root); systemd writes units.
	root, tabbyBin string
	systemd        bool
	units          systemdOptions
}

func newNodeInstallCommand(g *globals) *cobra.Command {
	var o installOptions
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the CNI plugin and write the network config (--mesos: the .cni file DC/OS reads)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.mesos {
				if !cmd.Flags().Changed("cni-bin-dir") {
					o.binDir = dcosCNIBinDir
				}
				if !cmd.Flags().Changed("cni-conf-dir") {
					o.confDir = dcosCNIConfDir
				}
			}
			o.units.datastore = firstNonEmpty(g.datastore, os.Getenv("TABBY_DATASTORE"))
			o.units.etcdCA = firstNonEmpty(g.etcdCA, os.Getenv("TABBY_ETCD_CA"))
			o.units.etcdCert = firstNonEmpty(g.etcdCert, os.Getenv("TABBY_ETCD_CERT"))
			o.units.etcdKey = firstNonEmpty(g.etcdKey, os.Getenv("TABBY_ETCD_KEY"))
			return installNode(g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.binDir, "cni-bin-dir", defaultCNIBinDir, "where the runtime looks for CNI plugins")
	f.StringVar(&o.confDir, "cni-conf-dir", defaultCNIConfDir, "where the runtime looks for network configs")
	f.StringVar(&o.network, "network", defaultNetworkName, "network name (the profile containers on it share)")
	f.StringVar(&o.socket, "agent-socket", agent.DefaultSocket, "the agent's socket, written into the config")
	f.StringVar(&o.plugin, "plugin", "", "tabby-cni binary to install (default: next to this tabby binary)")
	f.BoolVar(&o.mesos, "mesos", false, "write the single <network>.cni file Mesos reads (0.2.0 results) into DC/OS's directories")
	f.IntVar(&o.mtu, "mtu", 0, "MTU of container interfaces (0: detected by the agent)")
	f.StringSliceVar(&o.nameservers, "nameserver", nil, "DNS servers for containers (e.g. the tabby dns address)")
	f.StringVar(&o.root, "root", "", "install under this directory instead of /")
	f.BoolVar(&o.systemd, "systemd", false, "also install tabby as "+tabbyBinaryPath+" and write systemd units and /etc/tabby/*.env")
	f.StringVar(&o.tabbyBin, "tabby-binary", "", "tabby binary to install with --systemd (default: this one)")
	f.StringVar(&o.units.node, "node", "", "with --systemd: the agent's node name (TABBY_NODE; default the hostname)")
	f.BoolVar(&o.units.withDatastore, "with-datastore", false, "with --systemd: also a unit running the datastore on this node")
	f.BoolVar(&o.units.withDNS, "with-dns", false, "with --systemd: also a unit running tabby dns")
	return cmd
}

func installNode(g *globals, o installOptions) error {
	if !regexp.MustCompile(networkNamePattern).MatchString(o.network) {
		return fmt.Errorf("--network: %q is not a valid network name (letters, digits, '_', '.', '-')", o.network)
	}
	src := o.plugin
	if src == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find tabby-cni: %w", err)
		}
		src = filepath.Join(filepath.Dir(self), "tabby-cni")
	}
	if st, err := os.Stat(src); err != nil || st.IsDir() {
		return fmt.Errorf("--plugin: %s is not the tabby-cni binary (build it with make build)", src)
	}
	if !o.systemd && (o.units.withDatastore || o.units.withDNS || o.units.node != "" || o.tabbyBin != "") {
		return fmt.Errorf("--with-datastore, --with-dns, --node and --tabby-binary need --systemd")
	}
	if o.root != "" {
		if !filepath.IsAbs(o.root) {
			return fmt.Errorf("--root: %q is not an absolute path", o.root)
		}
		o.binDir, o.confDir = filepath.Join(o.root, o.binDir), filepath.Join(o.root, o.confDir)
	}
	if o.systemd {
		written, err := writeSystemd(o.root, o.tabbyBin, o.units)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "Wrote %s\n", strings.Join(written, ", "))
	}
	if err := os.MkdirAll(o.binDir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(o.confDir, 0o755); err != nil {
		return err
	}
	// The runtime execs plugins by their type name.
	for _, name := range []string{"tabby", "tabby-ipam"} {
		if err := copyAtomic(src, filepath.Join(o.binDir, name), installedPluginPerms); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	plugin := map[string]any{"type": "tabby", "agent_socket": o.socket, "ipam": map[string]any{"type": "tabby-ipam"}}
	if o.mtu > 0 {
		plugin["mtu"] = o.mtu
	}
	if len(o.nameservers) > 0 {
		plugin["dns"] = map[string]any{"nameservers": o.nameservers}
	}
	var conf any
	var path string
	if o.mesos {
		// Mesos reads every file in the directory whatever its extension
		// and understands only 0.1/0.2 results: no cniVersion, one plugin.
		plugin["name"] = o.network
		conf, path = plugin, filepath.Join(o.confDir, o.network+".cni")
	} else {
		conf = map[string]any{"cniVersion": "1.1.0", "name": o.network, "plugins": []any{plugin}}
		path = filepath.Join(o.confDir, "10-"+o.network+".conflist")
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "Installed the CNI plugin as %s and %s\nWrote network %q to %s\n",
		filepath.Join(o.binDir, "tabby"), filepath.Join(o.binDir, "tabby-ipam"), o.network, path)
	return nil
}

func copyAtomic(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tabby-install-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

func writeAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tabby-install-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
