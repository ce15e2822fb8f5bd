package harness

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/lab"
)

// StartLab brings up a Tabby lab (internal/lab: a fabric, a master with
// the datastore and hosts each running `tabby agent`) named tb<run><n>,
// and registers its removal. cfg.Name, BinDir and Logger are filled in.
func StartLab(ctx context.Context, env *Env, cfg lab.Config) (*lab.Lab, error) {
	n := env.seq.Add(1)
	// Lab names are at most 8 characters: "tb" + 4 hex of the run + a counter.
	cfg.Name = fmt.Sprintf("tb%s%d", env.RunID, n%100)
	cfg.BinDir = env.Bin
	cfg.Logger = env.Log.With("lab", cfg.Name)
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 2 * time.Minute
	}
	env.J.Lab(cfg.Name)
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		env.J.LabDone(cfg.Name)
		return nil, err
	}
	env.J.Defer("lab "+cfg.Name, func() error {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		err := lab.Down(dctx, lab.DefaultStateRoot, cfg.Name, env.Log)
		env.J.LabDone(cfg.Name)
		return err
	})
	return l, nil
}

// LabRun starts a container in a lab and returns it with its address.
func LabRun(ctx context.Context, l *lab.Lab, spec lab.RunSpec) (*lab.Container, netip.Addr, error) {
	c, err := l.Run(ctx, spec)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	if len(c.IPs) == 0 {
		return nil, netip.Addr{}, fmt.Errorf("container %s has no address", spec.Name)
	}
	return c, c.IPs[0].Addr(), nil
}

// KernelHas reports whether this kernel can make a link of the given type
// (e.g. ipip, vxlan), trying in a scratch namespace.
func KernelHas(env *Env, linkType string) (bool, error) {
	ns := env.Name("k")
	if _, err := env.J.Namespace(ns); err != nil {
		return false, err
	}
	args := []string{"link", "add", "probe0", "type", linkType}
	switch linkType {
	case "vxlan":
		args = append(args, "id", "42", "dstport", "4789")
	case "ipip":
		args = append(args, "local", "192.0.2.1")
	}
	err := IP(ns, args...)
	if err != nil && strings.Contains(err.Error(), "Unknown device type") {
		return false, nil
	}
	return err == nil, err
}
