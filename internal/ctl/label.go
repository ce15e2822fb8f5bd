package ctl

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/api"
)

// newLabelCommand is calicoctl's label verb:
//
//	tabby label KIND NAME KEY=VALUE [--overwrite]
//	tabby label KIND NAME KEY --remove
func newLabelCommand(g *globals) *cobra.Command {
	var namespace string
	var overwrite, remove, dryRun bool
	cmd := &cobra.Command{
		Use:   "label KIND NAME (KEY=VALUE [--overwrite] | KEY --remove)",
		Short: "Set or remove a label on any resource (compare-and-swap)",
		Long: "Sets a label (refusing to change an existing value unless --overwrite) or removes one\n" +
			"(--remove). The update is compare-and-swap: a concurrent change is re-read, never lost.",
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := newTarget(args[0], namespace, args[1])
			if err != nil {
				return err
			}
			key, value, hasValue := strings.Cut(args[2], "=")
			switch {
			case remove && hasValue:
				return exitError{code: 2, msg: fmt.Sprintf("label: with --remove give the key only, not %q", args[2])}
			case remove && overwrite:
				return exitError{code: 2, msg: "label: --remove and --overwrite are exclusive"}
			case !remove && !hasValue:
				return exitError{code: 2, msg: fmt.Sprintf("label: %q: want KEY=VALUE (or KEY --remove)", args[2])}
			case key == "":
				return exitError{code: 2, msg: fmt.Sprintf("label: %q: the key is empty", args[2])}
			}
			store, err := g.connect()
			if err != nil {
				return err
			}
			defer store.Close()
			_, err = modify(cmd.Context(), store, t, dryRun, func(r api.Resource) (api.Resource, bool, error) {
				return r, false, changeLabel(r.GetObjectMeta(), t, key, value, remove, overwrite)
			})
			if err != nil {
				return fmt.Errorf("label %s: %w", t, err)
			}
			verb := fmt.Sprintf("set label %s=%s on", key, value)
			if remove {
				verb = "removed label " + key + " from"
			}
			if dryRun {
				fmt.Fprintf(g.stdout, "Dry run: would have %s %s; nothing was written\n", verb, t)
				return nil
			}
			fmt.Fprintf(g.stdout, "Successfully %s %s\n", verb, t)
			return nil
		},
		ValidArgsFunction: completeKinds,
	}
	f := cmd.Flags()
	f.StringVarP(&namespace, "namespace", "n", "", "namespace of namespaced resources (default \"default\")")
	f.BoolVar(&overwrite, "overwrite", false, "change the value of a label that is already set")
	f.BoolVar(&remove, "remove", false, "remove the label KEY")
	f.BoolVar(&dryRun, "dry-run", false, "check the change and report it; write nothing")
	return cmd
}

// changeLabel sets or removes one label as calicoctl does.
func changeLabel(m *api.ObjectMeta, t target, key, value string, remove, overwrite bool) error {
	old, set := m.Labels[key]
	switch {
	case remove && !set:
		return fmt.Errorf("metadata.labels: %q is not set on %s", key, t)
	case remove:
		delete(m.Labels, key)
	case set && old != value && !overwrite:
		return fmt.Errorf("metadata.labels[%q]: already set to %q; pass --overwrite to change it to %q", key, old, value)
	default:
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		m.Labels[key] = value
	}
	return nil
}
