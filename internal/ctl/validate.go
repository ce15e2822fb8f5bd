package ctl

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/api"
)

// newValidateCommand checks manifests without a datastore: strict decoding,
// field validation, and pools of the input overlapping one another. It
// writes nothing; `apply --dry-run` also checks against the datastore.
func newValidateCommand(g *globals) *cobra.Command {
	var files []string
	var recursive bool
	cmd := &cobra.Command{
		Use:   "validate -f FILE|DIR|-",
		Short: "Check resource files offline (fields, values, selectors, pool overlaps); write nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := readManifests(g, files, recursive)
			if err != nil {
				return err
			}
			if err := checkInputPools(docs); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Valid: %d resource(s)\n", len(docs))
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (stdin) holding the resources")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "descend into subdirectories of -f DIR")
	return cmd
}

// checkInputPools refuses IPPools of one input that overlap each other.
func checkInputPools(docs []document) error {
	var pools []*api.IPPool
	for _, d := range docs {
		if p, ok := d.res.(*api.IPPool); ok {
			pools = append(pools, p)
		}
	}
	sort.SliceStable(pools, func(i, j int) bool { return pools[i].Name < pools[j].Name })
	for i, p := range pools {
		if err := api.CheckPoolOverlap(pools[:i], p); err != nil {
			return fmt.Errorf("IPPool %q: %w", p.Name, err)
		}
	}
	return nil
}
