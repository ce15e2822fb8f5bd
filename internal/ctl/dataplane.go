package ctl

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/agent/dnspolicy"
	"github.com/tabbynet/tabby/internal/agent/flowlog"
	"github.com/tabbynet/tabby/internal/agent/policy/nft"
	"github.com/tabbynet/tabby/internal/agent/routing/router"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/flows"
)

// kernelDataplane wires the production dataplane parts for `tabby agent`.
type kernelDataplane struct {
	*agent.KernelDataplane
	router  *router.Router       // nil: routing disabled
	nft     *nft.Driver          // nil: policy disabled
	flows   *flowlog.Collector   // nil: flow logs off
	dns     *dnspolicy.Forwarder // nil: egress by DNS name off
	learner *nft.Learner
}

func newKernelDataplane(cfg agent.Config, flows *flowlog.Config, store datastore.Store, log *slog.Logger) (*kernelDataplane, error) {
	dp := &agent.KernelDataplane{Log: log, Form: cfg.PolicyForm}
	d := &kernelDataplane{KernelDataplane: dp}
	if flows != nil {
		c, err := flowlog.New(*flows, log)
		if err != nil {
			return nil, err
		}
		c.UseKernel()
		d.flows, dp.Flows = c, c
	}
	if !cfg.DisablePolicy {
		d.nft = nft.New(log)
		dp.Policy = d.nft
	}
	if !cfg.DisableRouting {
		r, err := router.New(router.Config{Node: cfg.Node, DisableBGP: cfg.DisableBGP}, store, log)
		if err != nil {
			return nil, err
		}
		d.router, dp.Router = r, r
	}
	return d, nil
}

// mount adds the dataplane's HTTP handlers and metrics to the agent.
func (d *kernelDataplane) mount(a *agent.Agent) error {
	if d.flows != nil {
		a.Handle("GET "+flows.Path, d.flows.Handler())
		if err := a.RegisterMetrics(d.flows.Collectors()...); err != nil {
			return err
		}
	}
	if d.router != nil {
		a.Handle("GET "+router.StatusPath, d.router.Handler())
		if err := a.RegisterMetrics(d.router.Collectors()...); err != nil {
			return err
		}
	}
	if d.dns != nil {
		if err := a.RegisterMetrics(d.dns.Collectors()...); err != nil {
			return err
		}
	}
	return nil
}

// runDataplaneAndAgent runs the agent and the dataplane's own loops (the
// router; the nftables change monitor) side by side; when one ends, the
// others are stopped too.
func runDataplaneAndAgent(ctx context.Context, d *kernelDataplane, a *agent.Agent) error {
	var loops []func(context.Context) error
	if d.router != nil {
		loops = append(loops, d.router.Run)
	}
	if d.nft != nil {
		loops = append(loops, d.nft.Run)
	}
	if d.flows != nil {
		loops = append(loops, d.flows.Run)
	}
	if d.dns != nil {
		loops = append(loops, d.runDNS)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(loops))
	for i, run := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			errs[i] = run(ctx)
		}()
	}
	aerr := a.Run(ctx)
	cancel()
	wg.Wait()
	return errors.Join(append(errs, aerr)...)
}
