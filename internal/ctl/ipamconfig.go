package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// newIPAMConfigureCommand is calicoctl's `ipam configure`: it changes
// IPAMConfig "default" (creating it when absent) with compare-and-swap.
func newIPAMConfigureCommand(g *globals) *cobra.Command {
	var strict string
	var maxBlocks int
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "configure [--strictaffinity=true|false] [--max-blocks-per-host=N]",
		Short: "Change cluster IPAM settings (IPAMConfig default): strict affinity, blocks per host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if !f.Changed("strictaffinity") && !f.Changed("max-blocks-per-host") {
				return exitError{code: 2, msg: "ipam configure: give --strictaffinity and/or --max-blocks-per-host"}
			}
			set := func(s *api.IPAMConfigSpec) {}
			if f.Changed("strictaffinity") {
				v, err := strconv.ParseBool(strict)
				if err != nil {
					return exitError{code: 2, msg: fmt.Sprintf("--strictaffinity: %q is not true or false", strict)}
				}
				prev := set
				set = func(s *api.IPAMConfigSpec) { prev(s); s.StrictAffinity = v }
			}
			if f.Changed("max-blocks-per-host") {
				if maxBlocks < 0 {
					return exitError{code: 2, msg: fmt.Sprintf("--max-blocks-per-host: %d is negative; use 0 for no limit", maxBlocks)}
				}
				prev := set
				set = func(s *api.IPAMConfigSpec) { prev(s); s.MaxBlocksPerHost = maxBlocks }
			}
			store, err := g.connect()
			if err != nil {
				return err
			}
			defer store.Close()
			cfg, err := configureIPAM(cmd.Context(), store, dryRun, set)
			if err != nil {
				return fmt.Errorf("ipam configure: %w", err)
			}
			if dryRun {
				fmt.Fprintln(g.stdout, "Dry run: nothing was written. The configuration would be:")
			} else {
				fmt.Fprintln(g.stdout, "Successfully updated the IPAM configuration:")
			}
			writeIPAMConfig(g.stdout, cfg)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&strict, "strictaffinity", "", "true: a node only uses addresses of its own blocks (no borrowing)")
	f.IntVar(&maxBlocks, "max-blocks-per-host", 0, "the most blocks one node may claim (0: no limit)")
	f.BoolVar(&dryRun, "dry-run", false, "check the change and print the result; write nothing")
	return cmd
}

// configureIPAM applies set to IPAMConfig default: a compare-and-swap
// update of the stored one, or a create when there is none (retried if
// another writer creates it first).
func configureIPAM(ctx context.Context, store datastore.Store, dryRun bool, set func(*api.IPAMConfigSpec)) (*api.IPAMConfig, error) {
	t, _ := newTarget("IPAMConfig", "", "default")
	c := datastore.NewClient(store)
	for range 3 {
		r, err := modify(ctx, store, t, dryRun, func(cur api.Resource) (api.Resource, bool, error) {
			set(&cur.(*api.IPAMConfig).Spec)
			return cur, false, nil
		})
		if err == nil {
			return r.(*api.IPAMConfig), nil
		}
		if !errors.Is(err, datastore.ErrNotFound) {
			return nil, err
		}
		n := &api.IPAMConfig{ObjectMeta: api.ObjectMeta{Name: "default"}}
		set(&n.Spec)
		api.SetDefaults(n)
		if err := api.Validate(n); err != nil || dryRun {
			return n, err
		}
		if _, err = c.Create(ctx, n); errors.Is(err, datastore.ErrExists) {
			continue
		}
		return n, err
	}
	return nil, fmt.Errorf("IPAMConfig \"default\": %w", datastore.ErrConflict)
}

func writeIPAMConfig(w io.Writer, c *api.IPAMConfig) {
	maxBlocks := "0 (no limit)"
	if c.Spec.MaxBlocksPerHost > 0 {
		maxBlocks = strconv.Itoa(c.Spec.MaxBlocksPerHost)
	}
	fmt.Fprintf(w, "  StrictAffinity:     %v\n", c.Spec.StrictAffinity)
	fmt.Fprintf(w, "  MaxBlocksPerHost:   %s\n", maxBlocks)
	fmt.Fprintf(w, "  AutoAllocateBlocks: %v\n", c.Spec.AutoAllocate())
	fmt.Fprintf(w, "  LeakGracePeriod:    %s\n", c.Spec.GracePeriod())
}
