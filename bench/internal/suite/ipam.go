package suite

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/report"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/ipam"
)

// IPAMRate measures how many addresses Tabby's IPAM hands out per second
// with 1 host and with 8 hosts allocating at once from one pool.
var IPAMRate = harness.Benchmark{
	ID:    "ipam",
	Title: "IPAM allocations per second",
	What: `Addresses handed out per second by Tabby's IPAM engine (internal/ipam, the code the agent runs
for every ADD) against a real datastore (` + "`tabby datastore run`" + `, etcd over a unix socket): one
host allocating alone, and 8 hosts — each with its own IPAM instance, node name and datastore
connection — allocating at the same time from one pool (affine /26 blocks, claimed with CAS).`,
	Baseline: `Two: **etcd CAS floor** — one compare-and-swap create per allocation on the same datastore
with the same number of clients, the least any etcd-backed IPAM must do; and **host-local** —
Debian's host-local IPAM plugin executed per allocation as a runtime does (a per-host file store
with no cluster coordination; 8 hosts = 8 processes at once, each with its own state directory).
Tabby's engine runs in-process while host-local pays a fork/exec per allocation, so the host-local
ratio says what a runtime sees from stock IPAM, not engine against engine.`,
	Method: `Each round allocates a fixed count per system (order alternating between rounds); rate =
allocations ÷ wall time. Addresses are not released between rounds. Calico's own bar is < 1 s per
AutoAssign (reference A4).`,
	Systems: []report.System{{Key: report.Tabby, Label: "Tabby IPAM"}, {Key: "floor", Label: "etcd CAS floor", Baseline: true},
		{Key: "hostlocal", Label: "host-local (exec)", Baseline: true}},
	Metrics: []report.Metric{
		{Key: "rate-1", Label: "allocations/s, 1 host", Unit: "1/s"},
		{Key: "rate-8", Label: "allocations/s, 8 hosts", Unit: "1/s"},
	},
	Budget: 4 * time.Minute, QuickBudget: 60 * time.Second,
	Run: runIPAM,
}

func runIPAM(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	ds, err := harness.StartDatastore(ctx, env)
	if err != nil {
		return err
	}
	if err := ds.Apply(ctx, harness.Pool("bench", "10.0.0.0/8", 26, "")); err != nil {
		return err
	}
	const hosts = 8
	stores := make([]datastore.Store, hosts)
	engines := make([]*ipam.IPAM, hosts)
	quiet := slog.New(slog.DiscardHandler)
	for i := range hosts {
		node := fmt.Sprintf("n%d", i)
		if err := ds.Apply(ctx, fmt.Sprintf("apiVersion: tabby.dev/v1\nkind: Node\nmetadata: {name: %s}\n", node)); err != nil {
			return err
		}
		s, err := etcd.New(etcd.Config{Endpoints: []string{ds.URL}})
		if err != nil {
			return fmt.Errorf("connect host %d: %w", i, err)
		}
		env.J.Defer("ipam store", s.Close)
		stores[i], engines[i] = s, ipam.New(s, quiet)
		if _, err := engines[i].Allocate(ctx, ipam.Request{Handle: "warm-" + node, Node: node, IPv4: 1}); err != nil {
			return fmt.Errorf("warm-up allocation: %w", err)
		}
	}
	hl, err := newHostLocal(env, hosts)
	hlOK := err == nil
	if !hlOK {
		rec.Note("host-local not measured: %v", err)
	}
	n1 := harness.Pick(env, 1000, 100)
	n8 := harness.Pick(env, 2000, 200)
	hl1 := harness.Pick(env, 300, 50)
	hl8 := harness.Pick(env, 600, 100)
	for r := 1; r <= env.Rounds; r++ {
		for _, sys := range harness.Order(r, report.Tabby, "floor", "hostlocal") {
			for _, nh := range []int{1, 8} {
				var alloc func(host, i int) error
				count := map[int]int{1: n1, 8: n8}[nh]
				switch sys {
				case report.Tabby:
					alloc = func(host, i int) error {
						_, err := engines[host].Allocate(ctx, ipam.Request{Handle: fmt.Sprintf("b%d-%d-%d-%d", r, nh, host, i), Node: fmt.Sprintf("n%d", host), IPv4: 1})
						return err
					}
				case "floor":
					alloc = func(host, i int) error {
						_, err := stores[host].Create(ctx, fmt.Sprintf("/tabby-bench/floor/%d/%d/%d/%d", r, nh, host, i), []byte(`{"handle":"x"}`))
						return err
					}
				case "hostlocal":
					if !hlOK {
						continue
					}
					count = map[int]int{1: hl1, 8: hl8}[nh]
					alloc = func(host, i int) error { return hl.add(ctx, host, fmt.Sprintf("b%d-%d-%d-%d", r, nh, host, i)) }
				}
				rate, err := allocRate(nh, count, alloc)
				if err != nil {
					return fmt.Errorf("%s, %d hosts: %w", sys, nh, err)
				}
				rec.Add(fmt.Sprintf("rate-%d", nh), sys, r, rate)
			}
		}
		env.Log.Info("round", "round", r)
	}
	return nil
}

// allocRate runs count allocations spread over hosts workers and returns
// allocations per second.
func allocRate(hosts, count int, alloc func(host, i int) error) (float64, error) {
	var wg sync.WaitGroup
	errs := make([]error, hosts)
	t0 := time.Now()
	for h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := h; i < count; i += hosts {
				if err := alloc(h, i); err != nil {
					errs[h] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return float64(count) / el.Seconds(), nil
}

// hostLocal execs Debian's host-local plugin, one state directory and
// subnet per host.
type hostLocal struct {
	path, nsPath string
	dirs         []string
}

func newHostLocal(env *harness.Env, hosts int) (*hostLocal, error) {
	p := filepath.Join(debianPlugins, "host-local")
	if _, err := os.Stat(p); err != nil {
		return nil, fmt.Errorf("%s missing (apt-get install containernetworking-plugins)", p)
	}
	ns := env.Name("hl")
	nsPath, err := env.J.Namespace(ns)
	if err != nil {
		return nil, err
	}
	h := &hostLocal{path: p, nsPath: nsPath}
	for i := range hosts {
		h.dirs = append(h.dirs, filepath.Join(env.Tmp, fmt.Sprintf("host-local-%d", i)))
	}
	return h, nil
}

func (h *hostLocal) add(ctx context.Context, host int, id string) error {
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"hlbench","ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.%d.0.0/16"}]]}}`,
		h.dirs[host], 64+host)
	cmd := exec.CommandContext(ctx, h.path)
	cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + id, "CNI_NETNS=" + h.nsPath, "CNI_IFNAME=eth0", "CNI_PATH=" + debianPlugins}
	cmd.Stdin = bytes.NewReader([]byte(conf))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("host-local ADD: %v: %s %s", err, out, stderr.String())
	}
	return nil
}
