// Command tabby-sim is the simulated scale run (internal/agent/simscale):
// many real agents in this one process against one embedded etcd, their
// kernels replaced by in-memory drivers. It prints the Result as JSON.
// `make bench` runs it through the "sim" benchmark; alone:
//
//	tabby-sim --agents 200 --endpoints 20000 --policies 5000 --events 150
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/internal/agent/simscale"
)

func main() {
	var cfg simscale.Config
	flag.IntVar(&cfg.Agents, "agents", 200, "simulated nodes, one agent each")
	flag.IntVar(&cfg.Running, "running", 0, "how many of the nodes run an agent (default: all)")
	flag.IntVar(&cfg.Endpoints, "endpoints", 20000, "workload endpoints, spread over the nodes")
	flag.IntVar(&cfg.Policies, "policies", 5000, "NetworkPolicies (5 per app of 20 endpoints)")
	flag.IntVar(&cfg.Rules, "rules", 5, "ingress rules per policy")
	flag.IntVar(&cfg.Events, "events", 150, "churn events: endpoint add, endpoint delete, policy add, in turn")
	flag.BoolVar(&cfg.EndpointsOnly, "endpoints-only", false, "churn endpoints only (no policy adds)")
	flag.DurationVar(&cfg.Gap, "gap", 20*time.Millisecond, "time between two churn events")
	flag.StringVar(&cfg.Dir, "dir", "", "scratch directory (default: a new temp dir, removed after)")
	timeout := flag.Duration("timeout", 30*time.Minute, "bound on the whole run")
	memProfile := flag.String("memprofile", "", "write a heap profile here after the agents' first sync")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *timeout)
	defer cancel2()
	if *memProfile != "" {
		cfg.AfterSync = func() {
			f, err := os.Create(*memProfile)
			if err == nil {
				_ = pprof.WriteHeapProfile(f)
				_ = f.Close()
			}
		}
	}
	res, err := simscale.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tabby-sim:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(res)
}
