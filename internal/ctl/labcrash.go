package ctl

import (
	"errors"

	"github.com/spf13/cobra"
)

func newLabCrashCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "crash NAME C...",
		Short: "Kill lab containers without CNI DEL, as a crashed runtime leaves them",
		Long: `Kill every process of each container (SIGKILL) and delete its network
namespace, sending no CNI DEL: only the host's agent can notice. The agent
removes the container's endpoint and releases its address a few seconds later
(tabby agent --dead-endpoint-grace). The container stays listed as crashed;
tabby lab rm then sends the late DEL a runtime would.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			l.SetLogger(labLogger(g, false))
			var errs []error
			for _, c := range args[1:] {
				if err := l.Crash(cmd.Context(), c); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
}
