package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// newIPAMCommand is `tabby ipam`: show, check and release addresses.
func newIPAMCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "Show IP address use, check IPAM for leaks and inconsistencies, release addresses",
	}
	cmd.AddCommand(newIPAMShowCommand(g), newIPAMCheckCommand(g), newIPAMReleaseCommand(g), newIPAMConfigureCommand(g))
	return cmd
}

// withIPAM connects to the datastore and runs f with an IPAM over it.
func (g *globals) withIPAM(cmd *cobra.Command, f func(ctx context.Context, m *ipam.IPAM) error) error {
	store, err := g.connect()
	if err != nil {
		return err
	}
	defer store.Close()
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return f(cmd.Context(), ipam.New(store, log))
}

func newIPAMShowCommand(g *globals) *cobra.Command {
	var o ipamShowOptions
	cmd := &cobra.Command{
		Use:   "show [--blocks] [--ip ADDR]",
		Short: "Show how much of each IP pool is in use, per block, or who holds an address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.ip != "" && o.blocks {
				return exitError{code: 2, msg: "ipam show: --ip and --blocks are exclusive"}
			}
			if o.config {
				return g.showIPAMConfig(cmd.Context())
			}
			if o.ip != "" {
				if _, err := parseIPFlag(o.ip); err != nil {
					return err
				}
			}
			return g.withIPAM(cmd, func(ctx context.Context, m *ipam.IPAM) error {
				return runIPAMShow(ctx, m, g.stdout, o)
			})
		},
	}
	cmd.Flags().BoolVar(&o.blocks, "blocks", false, "also show every block, with the node it is affine to")
	cmd.Flags().StringVar(&o.ip, "ip", "", "show who holds this address")
	cmd.Flags().BoolVar(&o.config, "show-configuration", false, "show the IPAM configuration (IPAMConfig default) instead")
	return cmd
}

func newIPAMCheckCommand(g *globals) *cobra.Command {
	var report string
	var showProblems bool
	cmd := &cobra.Command{
		Use:   "check [--show-problem-ips] [-o report.json]",
		Short: "Report leaked addresses, addresses held twice, handles without allocations and blocks without affinity (exit 1 if any)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withIPAM(cmd, func(ctx context.Context, m *ipam.IPAM) error {
				return runIPAMCheckTo(ctx, m, g.stdout, report)
			})
		},
	}
	cmd.Flags().StringVarP(&report, "output", "o", "", "also write the findings as JSON to this file (for ipam release --from-report)")
	cmd.Flags().BoolVar(&showProblems, "show-problem-ips", true, "list every problem address (the default; accepted for calicoctl compatibility)")
	return cmd
}

func newIPAMReleaseCommand(g *globals) *cobra.Command {
	var ip, from string
	var force bool
	cmd := &cobra.Command{
		Use:   "release (--ip ADDR [--force] | --from-report report.json)",
		Short: "Release an address (refused while a live endpoint holds it, unless --force), or the leaks of an ipam check report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case ip != "" && from != "":
				return exitError{code: 2, msg: "ipam release: --ip and --from-report are exclusive"}
			case from != "" && force:
				return exitError{code: 2, msg: "ipam release: --force applies to --ip only"}
			case from != "":
				r, err := readIPAMReport(from)
				if err != nil {
					return err
				}
				return g.withIPAM(cmd, func(ctx context.Context, m *ipam.IPAM) error {
					return releaseFromReport(ctx, m, g.stdout, r)
				})
			case ip == "":
				return exitError{code: 2, msg: "ipam release: --ip (or --from-report) is required"}
			}
			a, err := parseIPFlag(ip)
			if err != nil {
				return err
			}
			return g.withIPAM(cmd, func(ctx context.Context, m *ipam.IPAM) error {
				return runIPAMRelease(ctx, m, g.stdout, a, force)
			})
		},
	}
	cmd.Flags().StringVar(&ip, "ip", "", "the address to release")
	cmd.Flags().BoolVar(&force, "force", false, "release even if a live endpoint holds the address")
	cmd.Flags().StringVar(&from, "from-report", "", "release the leaked addresses of this ipam check report that are still leaked")
	return cmd
}

func parseIPFlag(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, exitError{code: 2, msg: fmt.Sprintf("--ip: %q is not an IPv4 or IPv6 address", s)}
	}
	return a.Unmap(), nil
}

type ipamShowOptions struct {
	blocks bool
	ip     string
	config bool
}

// showIPAMConfig prints IPAMConfig default (the defaults when absent).
func (g *globals) showIPAMConfig(ctx context.Context) error {
	store, err := g.connect()
	if err != nil {
		return err
	}
	defer store.Close()
	cfg := &api.IPAMConfig{ObjectMeta: api.ObjectMeta{Name: "default"}}
	r, err := datastore.NewClient(store).Get(ctx, "IPAMConfig", "", "default")
	switch {
	case err == nil:
		cfg = r.(*api.IPAMConfig)
	case !errors.Is(err, datastore.ErrNotFound):
		return err
	}
	fmt.Fprintln(g.stdout, "IPAM configuration:")
	writeIPAMConfig(g.stdout, cfg)
	return nil
}

// runIPAMShow prints calicoctl's table (GROUPING, CIDR, IPS TOTAL, IPS IN
// USE, IPS FREE), or the holder of one address.
func runIPAMShow(ctx context.Context, m *ipam.IPAM, w io.Writer, o ipamShowOptions) error {
	if o.ip != "" {
		a, err := parseIPFlag(o.ip)
		if err != nil {
			return err
		}
		return showIP(ctx, m, w, a)
	}
	u, err := m.Usage(ctx)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 3, ' ', 0)
	head := "GROUPING\tCIDR\tIPS TOTAL\tIPS IN USE\tIPS RESERVED\tIPS FREE"
	if o.blocks {
		head += "\tNODE"
	}
	fmt.Fprintln(tw, head)
	row := func(grouping string, cidr netip.Prefix, total *big.Int, inUse int, reserved *big.Int, node string) {
		free := new(big.Int).Sub(total, big.NewInt(int64(inUse)))
		free.Sub(free, reserved)
		line := fmt.Sprintf("%s\t%s\t%s\t%d (%s)\t%s (%s)\t%s (%s)", grouping, cidr, total, inUse, percent(big.NewInt(int64(inUse)), total),
			reserved, percent(reserved, total), free, percent(free, total))
		if o.blocks {
			line += "\t" + node
		}
		fmt.Fprintln(tw, line)
	}
	for _, p := range u.Pools {
		grouping := "IP Pool"
		if p.Pool.Spec.Disabled {
			grouping = "IP Pool (disabled)"
		}
		row(grouping, p.CIDR, p.Total, p.InUse, p.Reserved, "")
		if o.blocks {
			for _, b := range p.Blocks {
				row("Block", b.CIDR, big.NewInt(int64(b.Size)), b.InUse, big.NewInt(int64(b.Reserved)), nodeOrNone(b.Node))
			}
		}
	}
	if o.blocks {
		for _, b := range u.Orphans {
			row("Block (no pool)", b.CIDR, big.NewInt(int64(b.Size)), b.InUse, big.NewInt(int64(b.Reserved)), nodeOrNone(b.Node))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range strings.SplitAfter(buf.String(), "\n") {
		if l != "" {
			fmt.Fprintln(w, strings.TrimRight(l, " \n"))
		}
	}
	return nil
}

func nodeOrNone(n string) string {
	if n == "" {
		return "(none)"
	}
	return n
}

// percent is part/total as a whole percentage, as calicoctl prints it.
func percent(part, total *big.Int) string {
	if total.Sign() == 0 {
		return "0%"
	}
	q := new(big.Rat).SetFrac(new(big.Int).Mul(part, big.NewInt(100)), total)
	f, _ := q.Float64()
	return fmt.Sprintf("%.0f%%", f)
}

func showIP(ctx context.Context, m *ipam.IPAM, w io.Writer, a netip.Addr) error {
	info, err := m.Lookup(ctx, a)
	if err != nil {
		return err
	}
	switch {
	case info.Pool == nil && !info.Block.IsValid():
		fmt.Fprintf(w, "IP %s is not in any IP pool\n", a)
		return nil
	case !info.Allocated:
		fmt.Fprintf(w, "IP %s is not assigned\n", a)
		if info.Pool != nil {
			fmt.Fprintf(w, "  pool:       %s (%s)\n", info.Pool.Name, info.Pool.Spec.CIDR)
		}
		if len(info.Endpoints) > 0 {
			fmt.Fprintf(w, "  WARNING: endpoint(s) %s use it; run tabby ipam check\n", strings.Join(info.Endpoints, ", "))
		}
		return nil
	}
	fmt.Fprintf(w, "IP %s is in use\n", a)
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "  handle:\t%s\n", info.Handle)
	keys := make([]string, 0, len(info.Attrs))
	for k := range info.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s:\t%s\n", k, info.Attrs[k])
	}
	fmt.Fprintf(tw, "  block:\t%s (affine to %s)\n", info.Block, nodeOrNone(info.BlockNode))
	if info.Pool != nil {
		fmt.Fprintf(tw, "  pool:\t%s (%s)\n", info.Pool.Name, info.Pool.Spec.CIDR)
	} else {
		fmt.Fprintf(tw, "  pool:\t(none: the block is in no IP pool)\n")
	}
	if !info.AllocatedAt.IsZero() {
		fmt.Fprintf(tw, "  age:\t%s\n", time.Since(info.AllocatedAt).Round(time.Second))
	}
	endpoints := "(none)"
	if len(info.Endpoints) > 0 {
		endpoints = strings.Join(info.Endpoints, ", ")
	}
	fmt.Fprintf(tw, "  endpoints:\t%s\n", endpoints)
	fmt.Fprintf(tw, "  live:\t%v\n", info.Live)
	return tw.Flush()
}

// runIPAMCheck prints what ipam.Check finds; exit 1 when it finds anything.
func runIPAMCheck(ctx context.Context, m *ipam.IPAM, w io.Writer) error {
	return runIPAMCheckTo(ctx, m, w, "")
}

// runIPAMCheckTo is runIPAMCheck that also writes a JSON report to path.
func runIPAMCheckTo(ctx context.Context, m *ipam.IPAM, w io.Writer, path string) error {
	r, err := m.Check(ctx, nil)
	if err != nil {
		return err
	}
	if path != "" {
		if err := writeIPAMReport(path, newIPAMReport(r, time.Now())); err != nil {
			return err
		}
		defer fmt.Fprintf(w, "Report written to %s.\n", path)
	}
	fmt.Fprintf(w, "Checked %d pool(s), %d block(s), %d allocation(s), %d handle record(s), %d live endpoint(s).\n",
		r.Pools, r.Blocks, r.Allocations, r.Handles, r.Endpoints)
	if r.InFlight > 0 {
		fmt.Fprintf(w, "%d allocation(s) younger than %s have no endpoint yet (in flight, not counted as leaks).\n", r.InFlight, ipam.InFlightAge)
	}
	if r.OK() {
		fmt.Fprintln(w, "No problems found.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROBLEM\tADDRESS/BLOCK\tHANDLE\tNODE\tDETAIL")
	for _, p := range r.Problems {
		where := ""
		switch {
		case p.Addr.IsValid():
			where = p.Addr.String()
		case p.Block.IsValid():
			where = p.Block.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Kind, dash(where), dash(p.Handle), dash(p.Node), p.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "Found %d problem(s). Leaks and stale records are repaired by the agents' GC; `tabby ipam release --ip` frees one address.\n", len(r.Problems))
	return exitError{code: 1}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runIPAMRelease frees one address, refusing while a live endpoint holds it
// unless force. The release names the handle and sequence number seen, so
// an address re-allocated meanwhile is left alone.
func runIPAMRelease(ctx context.Context, m *ipam.IPAM, w io.Writer, a netip.Addr, force bool) error {
	info, err := m.Lookup(ctx, a)
	if err != nil {
		return err
	}
	if !info.Allocated {
		return fmt.Errorf("IP %s is not allocated", a)
	}
	if (info.Live || len(info.Endpoints) > 0) && !force {
		who := "a live node or endpoint"
		if len(info.Endpoints) > 0 {
			who = "endpoint(s) " + strings.Join(info.Endpoints, ", ")
		}
		return fmt.Errorf("IP %s (handle %q) is held by %s; releasing it would let IPAM give it to another workload while it is in use. Delete the endpoint, or pass --force", a, info.Handle, who)
	}
	ok, err := m.ReleaseAllocation(ctx, a, info.Handle, info.Seq)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("IP %s changed while it was being released (released or re-allocated); look again with tabby ipam show --ip %s", a, a)
	}
	fmt.Fprintf(w, "Released %s (handle %q)\n", a, info.Handle)
	return nil
}
