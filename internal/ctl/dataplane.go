package ctl

import (
	"context"
	"log/slog"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/agent/policy/nft"
	"github.com/tabbynet/tabby/internal/datastore"
)

// kernelDataplane wires the production dataplane parts for `tabby agent`.
type kernelDataplane struct {
	*agent.KernelDataplane
}

func newKernelDataplane(cfg agent.Config, store datastore.Store, log *slog.Logger) (*kernelDataplane, error) {
	dp := &agent.KernelDataplane{Log: log}
	if !cfg.DisablePolicy {
		dp.Policy = nft.New(log)
	}
	return &kernelDataplane{KernelDataplane: dp}, nil
}

// mount adds the dataplane's HTTP handlers to the agent.
func (d *kernelDataplane) mount(a *agent.Agent) {}

// runDataplaneAndAgent runs the agent (and the dataplane's own loops).
func runDataplaneAndAgent(ctx context.Context, d *kernelDataplane, a *agent.Agent) error {
	return a.Run(ctx)
}
