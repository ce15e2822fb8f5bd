package ctl

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/dns"
	"github.com/tabbynet/tabby/internal/version"
)

// newDNSCommand is `tabby dns`: the discovery daemon. Flags override the
// config file, which overrides the defaults.
func newDNSCommand(g *globals) *cobra.Command {
	var (
		configFile  string
		listen      string
		httpListen  string
		domain      string
		ipSources   string
		upstreams   string
		ttl         int
		masters     string
		refresh     time.Duration
		noDatastore bool
		logLevel    string
		fwdAllow    string
		fwdAny      bool
		maxForwards int
	)
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Serve Mesos-DNS and DC/OS names of containers over DNS and HTTP; forward other names",
		Long: `tabby dns answers for the Mesos domain (<task>.<framework>.mesos, SRV,
leader/master/slave) and the DC/OS zone (*.dcos.thisdcos.directory) from the
Tabby datastore's WorkloadEndpoints and Nodes (watched: a new container
resolves within a second) and, with --mesos-master, from the Mesos master's
state. Other names are forwarded to the upstream servers, only for clients
on loopback, in an IPPool's CIDR or in a Node's network (--forward-allow
widens that; others get REFUSED for those names), with at most
--max-forwards in flight. The HTTP API (on loopback unless --http-listen
says otherwise) has Mesos-DNS's paths (/v1/version, /v1/config,
/v1/hosts/{name}, /v1/services/{service}, /v1/enumerate) and /metrics.

--config reads a Mesos-DNS config.json (same field names); flags override it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := dns.DefaultConfig()
			if configFile != "" {
				data, err := os.ReadFile(configFile)
				if err != nil {
					return fmt.Errorf("read --config: %w", err)
				}
				if cfg, err = dns.ParseConfig(data); err != nil {
					return fmt.Errorf("%s: %w", configFile, err)
				}
			}
			f := cmd.Flags()
			if f.Changed("listen") {
				host, port, err := splitListen("--listen", listen)
				if err != nil {
					return err
				}
				cfg.Listener, cfg.Port = host, port
			}
			if f.Changed("http-listen") {
				host, port, err := splitListen("--http-listen", httpListen)
				if err != nil {
					return err
				}
				cfg.HTTPListener, cfg.HTTPPort = host, port
			}
			if f.Changed("domain") {
				cfg.Domain = domain
			}
			if f.Changed("ip-sources") {
				cfg.IPSources = splitList(ipSources)
			}
			if f.Changed("ttl") {
				cfg.TTL = int32(ttl)
			}
			if f.Changed("mesos-master") {
				cfg.Masters = splitList(masters)
			}
			if f.Changed("refresh") {
				cfg.RefreshSeconds = refresh.Seconds()
			}
			if f.Changed("forward-allow") {
				cfg.ForwardAllow = splitList(fwdAllow)
			}
			if f.Changed("forward-allow-any") {
				cfg.ForwardAllowAny = fwdAny
			}
			if f.Changed("max-forwards") {
				cfg.MaxForwardsInFlight = maxForwards
			}
			if f.Changed("upstream") {
				cfg.Resolvers = splitList(upstreams)
			} else if len(cfg.Resolvers) == 0 && cfg.ExternalOn {
				cfg.Resolvers = systemResolvers(cfg.Listener, cfg.Port)
			}
			level, err := parseLogLevel(logLevel)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level})).With("component", "dns")
			if cfg.Zk != "" {
				log.Warn("ZooKeeper leader detection is not supported; reading the masters listed in Masters", "zk", cfg.Zk)
			}

			var store datastore.Store
			if !noDatastore {
				if store, err = g.connect(); err != nil {
					return fmt.Errorf("connect to the datastore: %w", err)
				}
				defer store.Close()
			}
			srv, err := dns.New(cfg, dns.Options{Store: store, Logger: log, Version: version.String()})
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configFile, "config", "", "Mesos-DNS style JSON config file")
	fl.StringVar(&listen, "listen", "0.0.0.0:53", "DNS address (UDP and TCP)")
	fl.StringVar(&httpListen, "http-listen", "127.0.0.1:8123", "HTTP API address (it enumerates every record: keep it private)")
	fl.StringVar(&domain, "domain", "mesos", "the Mesos domain")
	fl.StringVar(&ipSources, "ip-sources", "netinfo,host", "task IP sources in order: netinfo (container IPs), host (agent IP), mesos, docker")
	fl.StringVar(&upstreams, "upstream", "", "upstream DNS servers IP[:PORT],... (default: the nameservers of /etc/resolv.conf; empty: forward nothing)")
	fl.IntVar(&ttl, "ttl", 60, "TTL of the records in the Mesos domain")
	fl.StringVar(&masters, "mesos-master", "", "Mesos master URLs or host:port, comma separated (the first that answers is read)")
	fl.DurationVar(&refresh, "refresh", time.Second, "how often the Mesos master state is read")
	fl.BoolVar(&noDatastore, "no-datastore", false, "serve records from the Mesos master only")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&fwdAllow, "forward-allow", "", "more client networks CIDR,... that names outside our zones are forwarded for (always: loopback, IPPool CIDRs, Node networks)")
	fl.BoolVar(&fwdAny, "forward-allow-any", false, "forward for every client (an open resolver)")
	fl.IntVar(&maxForwards, "max-forwards", dns.DefaultMaxForwardsInFlight, "forwarded queries waiting for upstreams at once; more get SERVFAIL")
	return cmd
}

func splitListen(flag, s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %v", flag, s, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %q is not a port", flag, s, port)
	}
	return host, int(n), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// systemResolvers are the nameservers of /etc/resolv.conf, without the
// address we listen on ourselves (forwarding to ourselves would loop).
func systemResolvers(listener string, port int) []string {
	conf, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	self := map[netip.Addr]bool{}
	if ip, err := netip.ParseAddr(listener); err == nil {
		self[ip.Unmap()] = true
		if ip.IsUnspecified() {
			if addrs, err := net.InterfaceAddrs(); err == nil {
				for _, a := range addrs {
					if p, err := netip.ParsePrefix(a.String()); err == nil {
						self[p.Addr().Unmap()] = true
					}
				}
			}
		}
	}
	var out []string
	for _, s := range conf.Servers {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if self[ip.Unmap()] && conf.Port == strconv.Itoa(port) {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, mustPort(conf.Port)).String())
	}
	return out
}

func mustPort(s string) uint16 {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 53
	}
	return uint16(n)
}
