package ctl

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/lab"
)

// newLabNetworkCommand is `tabby lab network`: add a network to a running lab.
func newLabNetworkCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "network NAME NET[,pool=CIDR][,label=KEY=VALUE]...",
		Short: "Add a CNI network (its own profile and pool) to a running lab",
		Long: `Add a network to a running lab as an operator would: the IPPool NET-pool
(with pool=CIDR), the profile NET (ingress from the network, all egress,
labelsToApply NET="" plus every label=KEY=VALUE), and the network's config files
on every host. The agents keep running: the next container started with
--network NET gets an address from the pool and the profile's labels.`,
		Example: `  tabby lab network demo blue,pool=10.245.0.0/16,label=team=blue`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := lab.ParseNetworkSpec(args[1])
			if err != nil {
				return labUsageErr("lab network: " + err.Error())
			}
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			if err := l.AddNetwork(cmd.Context(), spec); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "network %s added to lab %s\n", spec.Name, args[0])
			return nil
		},
	}
}

// newLabNamespaceCommand is `tabby lab namespace`: create or label a namespace.
func newLabNamespaceCommand(g *globals) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "namespace NAME NS [--label k=v]...",
		Short: "Create a namespace, or replace its labels",
		Long: `Write the Namespace NS with the given labels (replacing its labels;
kubernetes.io/metadata.name is always set). Policies' namespaceSelectors match
these labels at once. lab run --namespace creates a namespace without labels.`,
		Example: `  tabby lab namespace demo payments --label team=payments`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := parseLabelFlags(labels)
			if err != nil {
				return labUsageErr("lab namespace: --" + err.Error())
			}
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			if err := l.SetNamespace(cmd.Context(), args[1], m); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "namespace %s: %s\n", args[1], labLabelString(m))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&labels, "label", nil, "label key=value (repeatable)")
	return cmd
}

// newLabLabelCommand is `tabby lab label`: change a running container's labels.
func newLabLabelCommand(g *globals) *cobra.Command {
	var remove []string
	cmd := &cobra.Command{
		Use:   "label NAME C [KEY=VALUE]... [--remove KEY]...",
		Short: "Change a running container's labels; policy follows at once",
		Long: `Set or change (KEY=VALUE) and remove (--remove KEY) labels of a running
container: its WorkloadEndpoint is rewritten (compare-and-swap), so every
agent's policy follows the new labels at once. The labels the agent adds
(projectcalico.org/...) cannot be changed.`,
		Example: `  tabby lab label demo web role=frontend --remove app`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := parseLabelFlags(args[2:])
			if err != nil {
				return labUsageErr("lab label: " + err.Error())
			}
			if len(set) == 0 && len(remove) == 0 {
				return labUsageErr("lab label: give KEY=VALUE or --remove KEY")
			}
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			now, err := l.Relabel(cmd.Context(), args[1], set, remove)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: %s\n", args[1], labLabelString(now))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&remove, "remove", nil, "label key to remove (repeatable)")
	return cmd
}

// parseLabelFlags reads key=value labels; a key given twice is an error.
func parseLabelFlags(in []string) (map[string]string, error) {
	m := map[string]string{}
	for _, s := range in {
		kv, err := lab.ParseLabel(s)
		if err != nil {
			return nil, err
		}
		if _, dup := m[kv.Key]; dup {
			return nil, fmt.Errorf("label %q: given twice", kv.Key)
		}
		m[kv.Key] = kv.Value
	}
	return m, nil
}
