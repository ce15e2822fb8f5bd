package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/lab"
)

// labRoot is where labs keep their state (tests point it elsewhere).
var labRoot = lab.DefaultStateRoot

func init() {
	labDatastore = func(name string) (string, error) {
		l, err := lab.Open(labRoot, name)
		if err != nil {
			return "", err
		}
		return l.ClientURL(), nil
	}
	labTLS = func(name string) (ca, cert, key string) {
		l, err := lab.Open(labRoot, name)
		if err != nil {
			return "", "", ""
		}
		f, _ := l.ClientTLS()
		return f.CA, f.Cert, f.Key
	}
}

// newLabCommand is `tabby lab`: a multi-host cluster in network namespaces.
func newLabCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A multi-host Tabby cluster in network namespaces on this machine",
		Long: `A lab is a cluster made of network namespaces on one machine: a fabric with one
bridge per rack, a router between racks, a master running the datastore (and the
Mesos master state DNS reads), and hosts each running its own tabby agent.
Containers are attached through the real tabby-cni, as a container runtime (or
Mesos, with --mesos-app) does. Nothing touches the root namespace's network:
the CLI reaches a lab's datastore with --lab NAME through a unix socket.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(
		newLabUpCommand(g),
		newLabDownCommand(g),
		newLabListCommand(g),
		newLabNodesCommand(g),
		newLabSSHCommand(g),
		newLabRunCommand(g),
		newLabExecCommand(g),
		newLabLsCommand(g),
		newLabRmCommand(g),
		newLabCrashCommand(g),
		newLabAgentCommand(g),
		newLabUsageCommand(g),
		newLabProbeCommand(g),
		newLabFlowsCommand(g),
		newLabNetworkCommand(g),
		newLabNamespaceCommand(g),
		newLabLabelCommand(g),
		newLabMesosMasterCommand(g),
		newLabHTTPCommand(g),
	)
	return cmd
}

// labLogger logs lab progress to stderr (warnings only unless verbose).
func labLogger(g *globals, verbose bool) *slog.Logger {
	lvl := slog.LevelWarn
	if verbose {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl}))
}

// labBinDir is the directory of the running tabby binary, where `make
// build` also puts tabby-cni.
func labBinDir() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the tabby binary: %w", err)
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return filepath.Dir(exe), nil
}

// labDNS returns how the master runs `tabby dns`, or nil when this build
// has no dns command (or one without the flags the lab passes).
func labDNS(root *cobra.Command) *lab.DNSConfig {
	c, _, err := root.Find([]string{"dns"})
	if err != nil || c == nil || c.Name() != "dns" {
		return nil
	}
	for _, f := range []string{"listen", "mesos-master"} {
		if c.Flags().Lookup(f) == nil && c.PersistentFlags().Lookup(f) == nil {
			return nil
		}
	}
	return &lab.DNSConfig{Args: func(ip netip.Addr, datastore, mesos string) []string {
		return []string{
			"dns", "--listen", netip.AddrPortFrom(ip, 53).String(),
			"--http-listen", netip.AddrPortFrom(ip, 8123).String(),
			"--mesos-master", mesos, "--datastore", datastore,
			"--upstream=", // nothing outside the lab is reachable
		}
	}}
}

func openLab(name string) (*lab.Lab, error) {
	return lab.Open(labRoot, name)
}

func labUsageErr(msg string) error { return exitError{code: 2, msg: msg} }

func checkOutput(o string) error {
	if o != "" && o != "table" && o != "json" {
		return labUsageErr(fmt.Sprintf("-o %q: want table or json", o))
	}
	return nil
}

func labWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newLabUpCommand(g *globals) *cobra.Command {
	var (
		nodes, racks int
		pool, encap  string
		pool6, fam   string
		noDNS        bool
		noConsole    bool
		useTLS       bool
		dnsPolicy    bool
		verbose      bool
		agentArgs    []string
		networks     []string
		timeout      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "up NAME [--nodes N] [--racks R] [--pool CIDR] [--encap MODE] [--ip-family ipv4|ipv6|dual]",
		Short: "Build and start a lab",
		Long: `Build a lab: a fabric namespace with one bridge per rack (rack r is
10.(100+r).I.0/24, I telling labs apart), a router namespace joining the racks,
a master namespace running the datastore on its fabric address (.2 of rack 1)
and hosts h1…hN (round-robin over the racks, .11 up) each running tabby agent.
The default IPPool gets --pool and the ipipMode/vxlanMode of --encap.
--ip-family ipv6 or dual makes the fabric dual-stack on unique local
addresses (rack r is fd00:10:(100+r):I::/64, also on the router) and adds the
IPv6 pool --pool6; ipv6 leaves the IPv4 pool out, so containers get IPv6 only,
dual gives every container one address of each family.
With --tls the datastore serves only TLS and requires client certificates: the
lab makes a CA and a certificate for every agent, the DNS server and the CLI
(STATE/tls/), as a production install would.
On failure everything made so far is removed.`,
		Example: `  tabby lab up demo
  tabby lab up big --nodes 20 --racks 4 --encap vxlan-crosssubnet
  tabby lab up ds --racks 2 --ip-family dual
  tabby lab up prod --tls`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := lab.Config{
				Name: args[0], Nodes: nodes, Racks: racks, Encap: encap,
				StateRoot: labRoot, AgentArgs: agentArgs, ReadyTimeout: timeout,
				TLS: useTLS, Logger: labLogger(g, verbose), IPFamily: fam,
			}
			if err := lab.ValidateIPFamily(fam); err != nil {
				return labUsageErr("lab up: --" + err.Error())
			}
			if pool6 != "" {
				p, err := netip.ParsePrefix(pool6)
				if err != nil {
					return labUsageErr(fmt.Sprintf("lab up: --pool6 %q: not a CIDR", pool6))
				}
				cfg.Pool6 = p
			}
			for _, n := range networks {
				spec, err := lab.ParseNetworkSpec(n)
				if err != nil {
					return labUsageErr("lab up: --" + err.Error())
				}
				cfg.Networks = append(cfg.Networks, spec)
			}
			if pool != "" {
				p, err := netip.ParsePrefix(pool)
				if err != nil {
					return labUsageErr(fmt.Sprintf("lab up: --pool %q: not a CIDR", pool))
				}
				cfg.Pool = p
			}
			dir, err := labBinDir()
			if err != nil {
				return err
			}
			cfg.BinDir = dir
			if !noConsole {
				cfg.Console = labConsole()
			}
			if !noDNS {
				cfg.DNS = labDNS(cmd.Root())
			}
			if dnsPolicy && noDNS {
				return labUsageErr("lab up: --dns-policy needs tabby dns on the master (drop --no-dns)")
			}
			cfg.DNSPolicy = dnsPolicy
			if err := cfg.WithDefaults().Validate(); err != nil {
				return labUsageErr("lab up: " + err.Error())
			}
			t0 := time.Now()
			l, err := lab.Up(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			st := l.State()
			dns := "no DNS"
			if st.DNS {
				dns = "DNS on " + st.Master.IP.Addr().String()
			}
			if a, ok := l.ConsoleAddr(); ok {
				dns += ", web console on " + a.String() + " (from here: `tabby --lab " + st.Name + " console`)"
			}
			if f, ok := l.ClientTLS(); ok {
				dns += ", datastore with TLS and client certificates (CA " + f.CA + ")"
			}
			fmt.Fprintf(g.stderr, "lab %s up in %s: %d hosts in %d rack(s), %s, pool %s (encap %s), %s; use `tabby --lab %s …`\n",
				st.Name, time.Since(t0).Round(time.Millisecond), st.Nodes, st.NRacks, st.Family(), joinPrefixes(st.Pools()), st.Encap, dns, st.Name)
			return printNodes(g.stdout, l.Nodes(), "")
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", lab.DefaultNodes, "number of agent hosts")
	f.IntVar(&racks, "racks", lab.DefaultRacks, "number of rack subnets (more than one adds a router)")
	f.StringVar(&pool, "pool", lab.DefaultPool.String(), "CIDR of the default IPPool")
	f.StringVar(&encap, "encap", lab.DefaultEncap, "none, vxlan, vxlan-crosssubnet, ipip or ipip-crosssubnet")
	f.StringVar(&fam, "ip-family", lab.DefaultIPFamily, "ipv4, ipv6 (IPv6 pool only, dual-stack fabric) or dual (both pools)")
	f.StringVar(&pool6, "pool6", lab.DefaultPool6.String(), "CIDR of the IPv6 IPPool (a unique local prefix; ipv6 and dual)")
	f.BoolVar(&noDNS, "no-dns", false, "do not run tabby dns on the master")
	f.BoolVar(&noConsole, "no-console", false, "do not run tabby console (the web console) on the master")
	f.BoolVar(&dnsPolicy, "dns-policy", false, "run every agent's DNS forwarder, so egress rules by domain work (containers' DNS is redirected to it; it asks the master's tabby dns)")
	f.BoolVar(&useTLS, "tls", false, "run the datastore with TLS and client-certificate auth; every component gets a certificate")
	f.StringArrayVar(&agentArgs, "agent-arg", nil, "extra argument for every tabby agent (repeatable)")
	f.StringArrayVar(&networks, "network", nil, "an extra network NAME[,pool=CIDR][,label=KEY=VALUE]...: its own profile (labelsToApply) and pool (repeatable)")
	f.DurationVar(&timeout, "ready-timeout", lab.DefaultReadyTimeout, "how long to wait for each process to serve")
	f.BoolVarP(&verbose, "verbose", "v", false, "log progress")
	return cmd
}

func newLabDownCommand(g *globals) *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "down NAME",
		Short: "Remove a lab: processes, namespaces, mounts and files",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return lab.Down(cmd.Context(), labRoot, args[0], labLogger(g, verbose))
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log progress")
	return cmd
}

func newLabListCommand(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the labs on this machine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			ls, err := lab.List(labRoot)
			if err != nil {
				return err
			}
			if out == "json" {
				if ls == nil {
					ls = []lab.Summary{}
				}
				return labWriteJSON(g.stdout, ls)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPHASE\tNODES\tRACKS\tPOOL\tENCAP\tMASTER\tCONTAINERS\tCREATED")
			for _, s := range ls {
				pools := s.Pool.String()
				switch s.IPFamily {
				case lab.IPv6:
					pools = s.Pool6.String()
				case lab.Dual:
					pools += "," + s.Pool6.String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\n", s.Name, s.Phase, s.Nodes, s.Racks, pools, s.Encap,
					s.Master, s.Containers, s.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "table or json")
	return cmd
}

func printNodes(w io.Writer, ns []lab.NodeStatus, out string) error {
	if out == "json" {
		return labWriteJSON(w, ns)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tIP\tID\tTYPE")
	for _, n := range ns {
		ip := n.IP.Addr().String()
		if n.IP6.IsValid() {
			ip += "," + n.IP6.Addr().String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, ip, n.ID, n.Type)
	}
	return tw.Flush()
}

func newLabNodesCommand(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "nodes NAME [-o json]",
		Short: "List a lab's master and hosts, like `dcos node`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			return printNodes(g.stdout, l.Nodes(), out)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "table or json")
	return cmd
}

// splitDash splits args at "--": the positional arguments and the command.
func splitDash(cmd *cobra.Command, args []string) (pos, rest []string) {
	if i := cmd.ArgsLenAtDash(); i >= 0 {
		return args[:i], args[i:]
	}
	return args, nil
}

// runAttached runs c with the CLI's stdio and turns its exit status into
// ours.
func runAttached(g *globals, c *exec.Cmd) error {
	c.Stdin, c.Stdout, c.Stderr = g.stdin, g.stdout, g.stderr
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return exitError{code: code}
	}
	return err
}

func newLabSSHCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ssh NAME NODE [-- CMD...]",
		Short: "Run a shell or a command on a lab node (the lab's `dcos node ssh`)",
		Long: `Run a shell (or CMD) inside a node's namespace: master, h1…hN (or a host's
Mesos agent ID or IP), router or fabric.`,
		Example: `  tabby lab ssh demo h1
  tabby lab ssh demo master -- ip route`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pos, rest := splitDash(cmd, args)
			if len(pos) != 2 {
				return labUsageErr("lab ssh: want NAME NODE [-- CMD...]")
			}
			l, err := openLab(pos[0])
			if err != nil {
				return err
			}
			if len(rest) == 0 {
				sh := os.Getenv("SHELL")
				if sh == "" {
					sh = "/bin/sh"
				}
				rest = []string{sh}
			}
			c, err := l.NodeCommand(cmd.Context(), pos[1], rest)
			if err != nil {
				return err
			}
			return runAttached(g, c)
		},
	}
}

func newLabRunCommand(g *globals) *cobra.Command {
	var (
		spec   lab.RunSpec
		labels []string
		ports  []string
		out    string
	)
	cmd := &cobra.Command{
		Use:   "run NAME --node NODE --name C [--namespace NS] [--network NET] [--label k=v]... [--port NAME=PORT/PROTO]... [--mesos-app /group/app] -- CMD...",
		Short: "Start a container on a lab host, attached through tabby-cni",
		Long: `Create a container namespace on a host, attach it through tabby-cni with libcni
as a runtime does, start CMD inside it detached (output in a log) and print the
container's IP. With --mesos-app the attach is Mesos's (a 0.1.0 config with
args["org.apache.mesos"].network_info, no CNI_ARGS) and the container is a
Marathon task in the lab's /master/state. The container's /etc/resolv.conf comes
from the CNI result's dns.`,
		Example: `  tabby lab run demo --node h1 --name web --label app=web -- sleep infinity
  tabby lab run demo --node h2 --name db --mesos-app /prod/db -- sleep infinity`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			pos, rest := splitDash(cmd, args)
			if len(pos) != 1 {
				return labUsageErr("lab run: want NAME --node NODE --name C -- CMD...")
			}
			spec.Command = rest
			spec.Labels = nil
			for _, s := range labels {
				kv, err := lab.ParseLabel(s)
				if err != nil {
					return labUsageErr("lab run: --" + err.Error())
				}
				spec.Labels = append(spec.Labels, kv)
			}
			spec.NamedPorts = nil
			for _, s := range ports {
				p, err := lab.ParseNamedPort(s)
				if err != nil {
					return labUsageErr("lab run: --" + err.Error())
				}
				spec.NamedPorts = append(spec.NamedPorts, p)
			}
			if err := spec.Validate(); err != nil {
				return labUsageErr("lab run: " + err.Error())
			}
			l, err := openLab(pos[0])
			if err != nil {
				return err
			}
			c, err := l.Run(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if out == "json" {
				return labWriteJSON(g.stdout, c)
			}
			fmt.Fprintln(g.stdout, c.IP())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Node, "node", "", "host to run on (h1…, a Mesos agent ID or an IP)")
	f.StringVar(&spec.Name, "name", "", "container name, unique in the lab")
	f.StringVar(&spec.Namespace, "namespace", "", "the endpoint's namespace")
	f.StringVar(&spec.Network, "network", lab.DefaultNetwork, "CNI network name")
	f.StringArrayVar(&labels, "label", nil, "label key=value (repeatable)")
	f.StringVar(&spec.MesosApp, "mesos-app", "", "run as a Marathon task of this app, attached the way Mesos does")
	f.StringArrayVar(&ports, "port", nil, "named port NAME=PORT/PROTO (tcp, udp or sctp; repeatable), for policy rules that name ports")
	f.StringVarP(&out, "output", "o", "", "print the IP (default) or the container as json")
	return cmd
}

func newLabExecCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "exec NAME C -- CMD...",
		Short:   "Run a command inside a lab container (exit code and stdio pass through)",
		Example: `  tabby lab exec demo web -- ip addr`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pos, rest := splitDash(cmd, args)
			if len(pos) != 2 || len(rest) == 0 {
				return labUsageErr("lab exec: want NAME C -- CMD...")
			}
			l, err := openLab(pos[0])
			if err != nil {
				return err
			}
			c, err := l.ContainerCommand(cmd.Context(), pos[1], rest)
			if err != nil {
				return err
			}
			return runAttached(g, c)
		},
	}
}

func labLabelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}

func newLabLsCommand(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "ls NAME [-o json]",
		Short: "List a lab's containers",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			cs, err := l.Containers()
			if err != nil {
				return err
			}
			if out == "json" {
				if cs == nil {
					cs = []lab.Container{}
				}
				return labWriteJSON(g.stdout, cs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CONTAINER\tNODE\tNAMESPACE\tIP\tLABELS")
			for _, c := range cs {
				ip := "-"
				if len(c.IPs) > 0 {
					ip = joinAddrs(c.IPs)
				}
				labels := labLabelString(c.Labels)
				if labels == "" {
					labels = "-"
				}
				name := c.Name
				if c.Phase != lab.PhaseRunning {
					name += " (" + c.Phase + ")"
				} else if !l.Running(c.Name) {
					name += " (exited)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, c.Node, c.Namespace, ip, labels)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "table or json")
	return cmd
}

func newLabRmCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm NAME C...",
		Short: "Stop and remove lab containers (CNI DEL)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			l.SetLogger(labLogger(g, false))
			var errs []error
			for _, c := range args[1:] {
				if err := l.Remove(cmd.Context(), c, force); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove even if CNI DEL fails (say, the host's agent is down)")
	return cmd
}

func newLabAgentCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "agent NAME HOST start|stop|kill|restart",
		Short: "Start, stop (SIGTERM), kill (SIGKILL) or restart a host's agent",
		Long: `Control one host's tabby agent process, for failure tests: containers keep
running while it is down. start and restart wait until it serves again.`,
		Example: `  tabby lab agent demo h2 kill
  tabby lab agent demo h2 start`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			switch args[2] {
			case "start":
				return l.StartAgent(ctx, args[1])
			case "stop", "kill":
				return l.StopAgent(args[1], args[2] == "kill")
			case "restart":
				if err := l.StopAgent(args[1], false); err != nil {
					return err
				}
				return l.StartAgent(ctx, args[1])
			}
			return labUsageErr(fmt.Sprintf("lab agent: action %q: want start, stop, kill or restart", args[2]))
		},
	}
}

func newLabUsageCommand(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "usage NAME [-o json]",
		Short: "Memory used by a lab's processes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			u, err := l.Usage()
			if err != nil {
				return err
			}
			if out == "json" {
				return labWriteJSON(g.stdout, u)
			}
			fmt.Fprintf(g.stdout, "%d processes: PSS %.1f MiB, RSS %.1f MiB\n", u.Processes, mib(u.PSS), mib(u.RSS))
			names := make([]string, 0, len(u.ByCommand))
			for n := range u.ByCommand {
				names = append(names, n)
			}
			sort.Slice(names, func(i, j int) bool { return u.ByCommand[names[i]] > u.ByCommand[names[j]] })
			for _, n := range names {
				fmt.Fprintf(g.stdout, "  %-16s PSS %.1f MiB\n", n, mib(u.ByCommand[n]))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "table or json")
	return cmd
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// newLabMesosMasterCommand is the lab's Mesos master state server, run by
// `lab up` in the master namespace.
func newLabMesosMasterCommand(g *globals) *cobra.Command {
	var cfg lab.MesosMasterConfig
	cmd := &cobra.Command{
		Use:    "mesos-master --state-dir DIR --listen IP:PORT",
		Short:  "Serve a lab's Mesos master /master/state (run by lab up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = slog.New(slog.NewTextHandler(g.stderr, nil))
			m, err := lab.NewMesosMaster(cfg)
			if err != nil {
				return labUsageErr(err.Error())
			}
			return m.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&cfg.StateDir, "state-dir", "", "the lab's state directory")
	cmd.Flags().StringVar(&cfg.Listen, "listen", "", "address to serve on")
	return cmd
}

// newLabHTTPCommand is a tiny HTTP server and client for demos and tests
// inside lab containers (which share the machine's files, so they can run
// tabby but may lack curl or a web server).
func newLabHTTPCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "http",
		Short:  "A tiny HTTP server and client for lab containers",
		Hidden: true,
		Args:   cobra.NoArgs,
	}
	var listen, text string
	serve := &cobra.Command{
		Use:   "serve [--listen ADDR] [--text TEXT]",
		Short: "Answer every request with TEXT and the client's address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s (you are %s)\n", text, r.RemoteAddr)
			})}
			go func() {
				<-cmd.Context().Done()
				_ = srv.Close()
			}()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	serve.Flags().StringVar(&listen, "listen", ":80", "address to listen on")
	serve.Flags().StringVar(&text, "text", "hello", "what to answer")
	var timeout time.Duration
	get := &cobra.Command{
		Use:   "get URL [--timeout D]",
		Short: "GET URL and print the body; exit 1 unless the answer is 2xx",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := &http.Client{Timeout: timeout}
			resp, err := c.Get(args[0])
			if err != nil {
				return exitError{code: 1, msg: err.Error()}
			}
			defer resp.Body.Close()
			_, _ = io.Copy(g.stdout, resp.Body)
			if resp.StatusCode/100 != 2 {
				return exitError{code: 1, msg: resp.Status}
			}
			return nil
		},
	}
	get.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	cmd.AddCommand(serve, get)
	return cmd
}

// joinPrefixes writes CIDRs comma-separated.
func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// joinAddrs writes the addresses of ps comma-separated (IPv4 first, as
// the CNI result lists them).
func joinAddrs(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Addr().String()
	}
	return strings.Join(s, ",")
}
