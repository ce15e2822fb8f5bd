package ctl

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/console"
	"github.com/tabbynet/tabby/internal/lab"
)

// DefaultConsoleListen is where `tabby console` listens unless told.
const DefaultConsoleListen = "127.0.0.1:9098"

// newConsoleCommand is `tabby console`: the read-only web console.
func newConsoleCommand(g *globals) *cobra.Command {
	var (
		listen, logLevel, labDir string
		agentPort                int
	)
	cmd := &cobra.Command{
		Use:   "console [--listen ADDR] [--agent-port PORT]",
		Short: "Serve the read-only web console: nodes, endpoints, policies, IPAM, flows",
		Long: `Serve a web console, read-only, on --listen: the nodes and their BGP sessions,
the endpoints with their labels and addresses, the policies by tier with the
endpoints each selects, IPAM use per pool and block, and the live flows of every
node's agent (its /flows API, on the node's address and --agent-port). Every page
is rendered from what the datastore says when it is loaded: reload for the
latest; the flows page follows by itself.

With --lab NAME the console reads the lab's datastore, reaches the agents from
inside the lab and also shows the reachability matrix of the lab's containers
(as tabby lab probe does). tabby lab up starts one on the lab's master.
The console has no authentication: keep it on loopback (the default) or behind
a proxy that has.`,
		Example: `  tabby console --listen 127.0.0.1:9098
  tabby console --lab demo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(g, logLevel)
			if err != nil {
				return err
			}
			if agentPort < 1 || agentPort > 65535 {
				return exitError{code: 2, msg: fmt.Sprintf("console: --agent-port %d: want 1-65535", agentPort)}
			}
			if _, _, err := net.SplitHostPort(listen); err != nil {
				return exitError{code: 2, msg: fmt.Sprintf("console: --listen %q: want HOST:PORT (%v)", listen, err)}
			}
			cfg := console.Config{AgentPort: agentPort, Logger: log}
			var l *lab.Lab
			switch {
			case g.lab != "":
				if l, err = openLab(g.lab); err != nil {
					return err
				}
				// The agents are reached from the master, inside the lab.
				cfg.AgentClient = lab.HTTPClientIn(l.State().Master.Namespace)
			case labDir != "":
				// The console tabby lab up runs on the master: it is
				// in the lab already.
				if l, err = lab.Open(filepath.Dir(labDir), filepath.Base(labDir)); err != nil {
					return err
				}
			}
			if l != nil {
				cfg.Title = "lab " + l.Name()
				cfg.Matrix = l.Probe
			}
			store, err := connectWithRetry(cmd, g, log)
			if err != nil {
				return err
			}
			defer store.Close()
			cfg.Store = store
			srv, err := console.New(cfg)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("console: --listen %s: %w", listen, err)
			}
			fmt.Fprintf(g.stderr, "tabby console on http://%s/\n", ln.Addr())
			return srv.Run(cmd.Context(), ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", DefaultConsoleListen, "address to serve the console on (HOST:PORT)")
	f.IntVar(&agentPort, "agent-port", console.DefaultAgentPort, "port of the agents' HTTP API (their --http-listen), reached on each node's address")
	f.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	f.StringVar(&labDir, "lab-dir", "", "the state directory of the lab this console runs in (set by tabby lab up)")
	_ = f.MarkHidden("lab-dir")
	return cmd
}

// labConsole is how the master of a lab runs `tabby console`: on its
// fabric address, reading the datastore on the fabric, with the lab's
// state directory for the matrix.
func labConsole() *lab.ConsoleConfig {
	return &lab.ConsoleConfig{Args: func(listen netip.AddrPort, datastore, dir string) []string {
		return []string{"console", "--listen", listen.String(), "--datastore", datastore, "--lab-dir", dir}
	}}
}
