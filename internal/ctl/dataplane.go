package ctl

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/agent/policy/nft"
	"github.com/tabbynet/tabby/internal/agent/routing/router"
	"github.com/tabbynet/tabby/internal/datastore"
)

// kernelDataplane wires the production dataplane parts for `tabby agent`.
type kernelDataplane struct {
	*agent.KernelDataplane
	router *router.Router // nil: routing disabled
}

func newKernelDataplane(cfg agent.Config, store datastore.Store, log *slog.Logger) (*kernelDataplane, error) {
	dp := &agent.KernelDataplane{Log: log}
	if !cfg.DisablePolicy {
		dp.Policy = nft.New(log)
	}
	d := &kernelDataplane{KernelDataplane: dp}
	if !cfg.DisableRouting {
		r, err := router.New(router.Config{Node: cfg.Node}, store, log)
		if err != nil {
			return nil, err
		}
		d.router, dp.Router = r, r
	}
	return d, nil
}

// mount adds the dataplane's HTTP handlers to the agent.
func (d *kernelDataplane) mount(a *agent.Agent) {
	if d.router != nil {
		a.Handle("GET "+router.StatusPath, d.router.Handler())
	}
}

// runDataplaneAndAgent runs the agent and the router side by side; when
// either ends, the other is stopped too.
func runDataplaneAndAgent(ctx context.Context, d *kernelDataplane, a *agent.Agent) error {
	if d.router == nil {
		return a.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var rerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		rerr = d.router.Run(ctx)
	}()
	aerr := a.Run(ctx)
	cancel()
	wg.Wait()
	return errors.Join(aerr, rerr)
}
