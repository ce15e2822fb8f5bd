package ctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/agent/policy/nft"
	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/agent/routing/kernel"
)

func init() { nodeSubcommands = append(nodeSubcommands, newNodeUninstallCommand) }

type uninstallOptions struct {
	root, binDir, confDir, network string
	mesos, filesOnly               bool
}

func newNodeUninstallCommand(g *globals) *cobra.Command {
	var o uninstallOptions
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what node install wrote and what the agent made in the kernel",
		Long: `Remove Tabby from this host: the systemd units and /etc/tabby/*.env that
node install --systemd wrote, the tabby binary it installed, the CNI plugins
(tabby, tabby-ipam) and the network's config; then, in this network namespace,
the workload veths (tby…), the VXLAN device vxlan.tabby, the routes the agent
made (proto 84 and 85) and the nftables table inet tabby. Stop the agent
first (systemctl disable --now tabby-agent). --root applies to the files;
--files-only leaves the kernel alone. What is already gone is not an error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.mesos {
				if !cmd.Flags().Changed("cni-bin-dir") {
					o.binDir = dcosCNIBinDir
				}
				if !cmd.Flags().Changed("cni-conf-dir") {
					o.confDir = dcosCNIConfDir
				}
			}
			return uninstallNode(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.root, "root", "", "the directory node install --root used")
	f.StringVar(&o.binDir, "cni-bin-dir", defaultCNIBinDir, "where the plugins were installed")
	f.StringVar(&o.confDir, "cni-conf-dir", defaultCNIConfDir, "where the network config was written")
	f.StringVar(&o.network, "network", defaultNetworkName, "the network whose config to remove")
	f.BoolVar(&o.mesos, "mesos", false, "the DC/OS layout (<network>.cni in DC/OS's directories)")
	f.BoolVar(&o.filesOnly, "files-only", false, "remove files only, not links, routes and the nftables table")
	return cmd
}

func uninstallNode(ctx context.Context, g *globals, o uninstallOptions) error {
	if o.root != "" && !filepath.IsAbs(o.root) {
		return fmt.Errorf("--root: %q is not an absolute path", o.root)
	}
	removed, errs := removeInstalledFiles(o)
	if !o.filesOnly {
		r, err := removeKernelState(ctx)
		removed = append(removed, r...)
		errs = append(errs, err)
	}
	for _, r := range removed {
		fmt.Fprintln(g.stdout, "Removed", r)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	fmt.Fprintf(g.stdout, "Tabby is uninstalled (%d items removed)\n", len(removed))
	return nil
}

// removeInstalledFiles removes what install writes, under the root.
func removeInstalledFiles(o uninstallOptions) ([]string, []error) {
	paths := []string{
		filepath.Join(o.binDir, "tabby"), filepath.Join(o.binDir, "tabby-ipam"),
		filepath.Join(o.confDir, "10-"+o.network+".conflist"), filepath.Join(o.confDir, o.network+".cni"),
		tabbyBinaryPath, filepath.Join(tabbyEnvDir, "datastore.env"), filepath.Join(tabbyEnvDir, "agent.env"),
	}
	for _, u := range unitNames {
		paths = append(paths, filepath.Join(systemdUnitDir, u))
	}
	var removed []string
	var errs []error
	for _, p := range paths {
		full := filepath.Join(o.root, p)
		if err := os.Remove(full); err == nil {
			removed = append(removed, full)
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", full, err))
		}
	}
	// /etc/tabby goes too once empty (it is Tabby's own).
	if err := os.Remove(filepath.Join(o.root, tabbyEnvDir)); err == nil {
		removed = append(removed, filepath.Join(o.root, tabbyEnvDir))
	}
	return removed, errs
}

// removeKernelState removes, in the current network namespace, the links,
// routes and nftables table the agent makes.
func removeKernelState(ctx context.Context) ([]string, error) {
	var removed []string
	var errs []error
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		name := l.Attrs().Name
		if !strings.HasPrefix(name, policy.DefaultInterfacePrefix) && name != routing.VXLANDeviceName {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete link %s: %w", name, err))
			continue
		}
		removed = append(removed, "link "+name)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		for _, proto := range []netlink.RouteProtocol{endpoint.RouteProtocol, kernel.RouteProtocol} {
			routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Protocol: proto, Table: 0}, netlink.RT_FILTER_PROTOCOL)
			if err != nil {
				errs = append(errs, fmt.Errorf("list routes of proto %d: %w", proto, err))
				continue
			}
			for _, r := range routes {
				if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
					continue
				}
				removed = append(removed, fmt.Sprintf("route %s proto %d", r.Dst, proto))
			}
		}
	}
	if err := nft.New(slog.New(slog.DiscardHandler)).Delete(ctx); err != nil {
		errs = append(errs, err)
	} else {
		removed = append(removed, "nftables table inet "+policy.TableName+" (if it existed)")
	}
	return removed, errors.Join(errs...)
}
