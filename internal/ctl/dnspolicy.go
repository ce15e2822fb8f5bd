package ctl

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/agent/dnspolicy"
	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/agent/policy/nft"
)

// dnsPolicyFlags configure the egress-by-name forwarder of `tabby agent`
// (docs/design/policy.md "Egress by DNS name").
type dnsPolicyFlags struct {
	listen      []string
	upstreams   []string
	resolvers   []string
	grace       time.Duration
	maxElements int
}

func (d *dnsPolicyFlags) register(f *pflag.FlagSet) {
	f.StringSliceVar(&d.listen, "dns-policy-listen", nil,
		"address:port of this node where the DNS forwarder for egress rules by domain listens, one per IP family (comma-separated); local workloads' DNS (UDP/TCP 53) is redirected to it (none: off, and rules with domains match nothing)")
	f.StringSliceVar(&d.upstreams, "dns-policy-upstream", nil, "resolvers the DNS forwarder asks, in order (ip or ip:port): tabby dns or the cluster's resolver")
	f.StringSliceVar(&d.resolvers, "dns-policy-resolver", nil,
		"addresses whose DNS (port 53) from local workloads is redirected to the forwarder: the resolvers workloads are configured with (default: the upstreams' addresses); DNS to other addresses is not redirected")
	f.DurationVar(&d.grace, "dns-policy-grace", dnspolicy.DefaultGrace, "how long past an answer's TTL its addresses stay allowed")
	f.IntVar(&d.maxElements, "dns-policy-max-elements", policy.DefaultMaxLearned, "bound on the addresses of each learned set (more are dropped and counted)")
}

// config turns the flags into the forwarder's configuration; ok is false
// when the forwarder is off.
func (d *dnsPolicyFlags) config() (cfg dnspolicy.Config, ok bool, err error) {
	if len(d.listen) == 0 {
		if len(d.upstreams) > 0 {
			return cfg, false, fmt.Errorf("--dns-policy-upstream needs --dns-policy-listen")
		}
		return cfg, false, nil
	}
	if len(d.listen) > 2 {
		return cfg, false, fmt.Errorf("--dns-policy-listen: %q: at most one address per IP family", strings.Join(d.listen, ","))
	}
	var aps []netip.AddrPort
	for _, l := range d.listen {
		ap, err := netip.ParseAddrPort(l)
		if err != nil {
			return cfg, false, fmt.Errorf("--dns-policy-listen: %q is not an address:port", l)
		}
		aps = append(aps, ap)
	}
	cfg = dnspolicy.Config{Listen: aps[0], Upstreams: d.upstreams, Grace: d.grace, MaxElements: d.maxElements}
	if len(aps) == 2 {
		cfg.ListenAlso = aps[1]
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, false, fmt.Errorf("--dns-policy-*: %w", err)
	}
	return cfg, true, nil
}

// interceptedResolvers parses --dns-policy-resolver, defaulting to the
// upstreams' addresses.
func (d *dnsPolicyFlags) interceptedResolvers(cfg dnspolicy.Config) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, r := range d.resolvers {
		a, err := netip.ParseAddr(r)
		if err != nil {
			return nil, fmt.Errorf("--dns-policy-resolver: %q is not an IP address", r)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		for _, u := range cfg.Upstreams {
			if ap, err := netip.ParseAddrPort(u); err == nil {
				out = append(out, ap.Addr())
			}
		}
	}
	return out, nil
}

// enableDNSPolicy adds the forwarder to the dataplane: the table
// redirects DNS to it, and it sees every ruleset the driver programmed.
func (d *kernelDataplane) enableDNSPolicy(flags dnsPolicyFlags, log *slog.Logger) error {
	cfg, ok, err := flags.config()
	if err != nil || !ok {
		return err
	}
	resolvers, err := flags.interceptedResolvers(cfg)
	if err != nil {
		return err
	}
	if d.nft == nil {
		return fmt.Errorf("--dns-policy-listen needs policy (drop --disable-policy)")
	}
	d.learner = nft.NewLearner(0)
	f, err := dnspolicy.New(cfg, d.learner, log)
	if err != nil {
		return err
	}
	d.dns = f
	dns := &policy.DNSPolicy{MaxElements: uint32(cfg.MaxElements), Resolvers: resolvers}
	for _, ap := range []netip.AddrPort{cfg.Listen, cfg.ListenAlso} {
		switch {
		case !ap.IsValid():
		case ap.Addr().Is4():
			dns.Redirect4 = ap
		default:
			dns.Redirect6 = ap
		}
	}
	d.KernelDataplane.DNS = dns
	d.KernelDataplane.Policy = &learningDriver{nft: d.nft, fwd: f, log: log}
	log.Info("egress by DNS name on", "listen", cfg.Listen.String(), "upstreams", strings.Join(cfg.Upstreams, ","))
	return nil
}

// runDNS restores the learned sets' bookkeeping from the kernel once the
// first ruleset is programmed, then serves (a restarted agent keeps the
// addresses its predecessor learned; see docs/design/policy.md).
func (d *kernelDataplane) runDNS(ctx context.Context) error {
	if err := d.dns.Restore(ctx, d.learner); err != nil {
		return err
	}
	defer d.learner.Close()
	return d.dns.Run(ctx)
}

// learningDriver tells the forwarder which learned sets exist around each
// Apply: it stops writing to sets about to go, and starts on new ones once
// the kernel has them.
type learningDriver struct {
	nft *nft.Driver
	fwd *dnspolicy.Forwarder
	log *slog.Logger
}

var _ agent.PolicyDriver = (*learningDriver)(nil)

func (l *learningDriver) Apply(ctx context.Context, rs *policy.Ruleset) error {
	l.fwd.Prepare(rs)
	if err := l.nft.Apply(ctx, rs); err != nil {
		return err
	}
	l.fwd.SetRuleset(rs)
	if l.nft.LastChange().Replaced {
		// The rebuilt table's learned sets are empty: write back what
		// the forwarder knows (or forget it, when that fails).
		if err := l.fwd.Rewrite(ctx); err != nil {
			l.log.Warn("egress by DNS name: learned addresses lost with the rebuilt table; clients regain them on their next lookup", "err", err)
		}
	}
	return nil
}

func (l *learningDriver) FlushConntrack(addrs []netip.Addr) error { return l.nft.FlushConntrack(addrs) }
func (l *learningDriver) Current() bool                           { return l.nft.Current() }
