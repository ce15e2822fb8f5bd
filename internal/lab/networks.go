package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// NetworkSpec is an extra CNI network of a lab: a profile of its own
// (named after it, as every network's) and, optionally, a pool of its own.
type NetworkSpec struct {
	// Name is the CNI network and profile name: lower-case letters,
	// digits and inner hyphens, at most 63.
	Name string `json:"name"`
	// Pool, when set, is the CIDR of an IPPool "<name>-pool" that the
	// network's configs name in ipam.ipv4_pools.
	Pool netip.Prefix `json:"pool,omitzero"`
	// Labels are the profile's labelsToApply, besides "<name>": "".
	Labels map[string]string `json:"labels,omitempty"`
}

// PoolName is the name of the network's own IPPool ("" without one).
func (n NetworkSpec) PoolName() string {
	if !n.Pool.IsValid() {
		return ""
	}
	return n.Name + "-pool"
}

// ParseNetworkSpec reads "NAME[,pool=CIDR][,label=KEY=VALUE]...".
func ParseNetworkSpec(s string) (NetworkSpec, error) {
	parts := strings.Split(s, ",")
	n := NetworkSpec{Name: strings.TrimSpace(parts[0])}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch k {
		case "pool":
			pfx, err := netip.ParsePrefix(v)
			if err != nil {
				return NetworkSpec{}, fmt.Errorf("network %q: pool %q: not a CIDR", s, v)
			}
			n.Pool = pfx
		case "label":
			kv, err := ParseLabel(v)
			if err != nil {
				return NetworkSpec{}, fmt.Errorf("network %q: %w", s, err)
			}
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			n.Labels[kv.Key] = kv.Value
		default:
			return NetworkSpec{}, fmt.Errorf("network %q: %q: want pool=CIDR or label=KEY=VALUE", s, p)
		}
	}
	return n, n.Validate(1)
}

// Validate checks a network (not against the lab's other pools).
func (n NetworkSpec) Validate(racks int) error {
	var errs []error
	if !validDNSLabel(n.Name, 63) {
		errs = append(errs, fmt.Errorf("network name %q: want lower-case letters, digits and inner hyphens, at most 63", n.Name))
	}
	if n.Name == DefaultNetwork {
		errs = append(errs, fmt.Errorf("network name %q: the lab's default network exists already", n.Name))
	}
	if n.Pool.IsValid() {
		if err := ValidatePool(n.Pool, racks); err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", n.Name, err))
		}
	}
	if err := api.Validate(n.profile()); err != nil {
		errs = append(errs, fmt.Errorf("network %s: profile: %w", n.Name, err))
	}
	return errors.Join(errs...)
}

// profile is the network's profile: the agent's default rules (ingress
// from the same network, all egress) with the spec's labels.
func (n NetworkSpec) profile() *api.Profile {
	labels := map[string]string{n.Name: ""}
	maps.Copy(labels, n.Labels)
	return &api.Profile{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "Profile"},
		ObjectMeta: api.ObjectMeta{Name: n.Name},
		Spec: api.ProfileSpec{
			Ingress:       []api.Rule{{Action: api.ActionAllow, Source: api.EntityRule{Selector: "has(" + n.Name + ")"}}},
			Egress:        []api.Rule{{Action: api.ActionAllow}},
			LabelsToApply: labels,
		},
	}
}

// AddNetwork makes a network on a running lab, as an operator would: its
// pool and profile in the datastore, then its configs on every host
// (replacing earlier ones). The agents are not restarted: the next ADD
// on the network uses it.
func (l *Lab) AddNetwork(ctx context.Context, n NetworkSpec) error {
	if err := n.Validate(l.st.NRacks); err != nil {
		return fmt.Errorf("lab %s: add network: %w", l.st.Name, err)
	}
	s, err := l.connect(5 * time.Second)
	if err != nil {
		return err
	}
	defer s.Close()
	c := datastore.NewClient(s)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var pools []string
	if n.Pool.IsValid() {
		if err := l.createNetworkPool(ctx, c, n); err != nil {
			return err
		}
		pools = []string{n.PoolName()}
	}
	if _, _, err := c.Apply(ctx, n.profile()); err != nil {
		return fmt.Errorf("lab %s: network %s: write profile: %w", l.st.Name, n.Name, err)
	}
	for _, h := range l.st.Hosts {
		if err := l.writeNetworkConfs(h, n.Name, pools, true); err != nil {
			return fmt.Errorf("lab %s: network %s: %w", l.st.Name, n.Name, err)
		}
	}
	l.log.Info("network added", "network", n.Name, "pool", n.Pool)
	return nil
}

// createNetworkPool creates the network's pool, with the encapsulation of
// the lab's default pool; an overlap with another pool is an error.
func (l *Lab) createNetworkPool(ctx context.Context, c *datastore.Client, n NetworkSpec) error {
	list, _, err := c.List(ctx, "IPPool", "")
	if err != nil {
		return fmt.Errorf("lab %s: list pools: %w", l.st.Name, err)
	}
	for _, r := range list {
		p := r.(*api.IPPool)
		if p.Name == n.PoolName() {
			continue
		}
		if o, err := netip.ParsePrefix(p.Spec.CIDR); err == nil && o.Overlaps(n.Pool) {
			return fmt.Errorf("lab %s: network %s: pool %s overlaps IPPool %s (%s)", l.st.Name, n.Name, n.Pool, p.Name, o)
		}
	}
	ipip, vxlan, err := EncapModes(l.st.Encap)
	if err != nil {
		return err
	}
	pool := &api.IPPool{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "IPPool"},
		ObjectMeta: api.ObjectMeta{Name: n.PoolName()},
		Spec:       api.IPPoolSpec{CIDR: n.Pool.String(), IPIPMode: ipip, VXLANMode: vxlan},
	}
	if _, _, err := c.Apply(ctx, pool); err != nil {
		return fmt.Errorf("lab %s: network %s: create pool %s: %w", l.st.Name, n.Name, n.Pool, err)
	}
	return nil
}

// writeNetworkConfs writes host h's configs for network (a conflist for
// CNI runtimes, a 0.1.0 config for Mesos); pools, when given, go in
// ipam.ipv4_pools. Existing files are kept unless replace.
func (l *Lab) writeNetworkConfs(h Node, network string, pools []string, replace bool) error {
	plugin := func() map[string]any {
		c := l.pluginConf(h)
		if len(pools) > 0 {
			c["ipam"] = map[string]any{"type": "tabby-ipam", "ipv4_pools": pools}
		}
		return c
	}
	list := map[string]any{
		"cniVersion": ConfListVersion,
		"name":       network,
		"plugins":    []any{plugin()},
	}
	mesos := plugin()
	mesos["cniVersion"] = MesosCNIVersion
	mesos["name"] = network
	for path, v := range map[string]any{l.confListPath(h.Name, network): list, l.mesosConfPath(h.Name, network): mesos} {
		if _, err := os.Stat(path); err == nil && !replace {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := writeJSON(path, v); err != nil {
			return err
		}
	}
	return nil
}
