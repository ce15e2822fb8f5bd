package ctl

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/lab"
)

// newLabProbeCommand is `tabby lab probe`: the who-can-reach-whom matrix
// of a lab's containers.
func newLabProbeCommand(g *globals) *cobra.Command {
	var (
		spec  lab.ProbeSpec
		out   string
		proto string
	)
	cmd := &cobra.Command{
		Use:   "probe NAME [--port P] [--proto tcp|udp|icmp] [--family 4|6] [--from C]... [--to C]... [-o json]",
		Short: "Print which containers of a lab can reach which (allowed/denied per pair)",
		Long: `Try every pair of the lab's running containers (or those named with --from and
--to) with one TCP connection, one echoed UDP datagram or one ping, and print the
matrix as the Kubernetes network-policy tests print reachability: one row per
source, one column per destination, "." allowed, "X" denied, "?" not probed.

For tcp and udp the probe starts a listener on the port in every destination
container for its own duration (a udp one echoes), so it works whatever the
containers run; where a container already listens on the tcp port, its own
listener answers. A denied pair costs --timeout; pairs run concurrently, at most
--concurrency at once. A TCP reset counts as allowed: policy drops, it never
rejects.`,
		Example: `  tabby lab probe demo
  tabby lab probe demo --proto udp --port 53
  tabby lab probe demo --proto icmp --from web -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			spec.Protocol = strings.ToLower(proto)
			if spec.Protocol == lab.ProbeICMP && !cmd.Flags().Changed("port") {
				spec.Port = 0
			}
			spec = spec.WithDefaults()
			if err := spec.Validate(); err != nil {
				return labUsageErr("lab probe: " + err.Error())
			}
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			r, err := l.Probe(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if out == "json" {
				return labWriteJSON(g.stdout, r)
			}
			if len(r.From) == 0 || len(r.To) == 0 {
				fmt.Fprintf(g.stdout, "lab %s has no running containers to probe\n", args[0])
				return nil
			}
			return r.WriteTable(g.stdout)
		},
	}
	f := cmd.Flags()
	f.IntVar(&spec.Port, "port", 80, "destination port (tcp and udp)")
	f.StringVar(&proto, "proto", lab.ProbeTCP, "tcp, udp or icmp")
	f.StringArrayVar(&spec.From, "from", nil, "source container (repeatable; default all)")
	f.StringArrayVar(&spec.To, "to", nil, "destination container (repeatable; default all)")
	f.DurationVar(&spec.Timeout, "timeout", lab.DefaultProbeTimeout, "how long one probe waits (what a denied pair costs)")
	f.IntVar(&spec.Concurrency, "concurrency", lab.DefaultProbeConcurrency, "pairs probed at once")
	f.IntVar(&spec.Family, "family", 4, "4 or 6: probe the containers' IPv4 or IPv6 addresses")
	f.StringVarP(&out, "output", "o", "", "table or json")
	return cmd
}
