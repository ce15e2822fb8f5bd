package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/lab"
)

// TestPrivilegedChaosIPAMCrash: containers are started and removed on
// every host (ADD and DEL through tabby-cni, many at once) while agents
// are killed with SIGKILL at random moments and started again. No address
// is ever given to two running containers, and no two endpoints list one
// address (sampled from the datastore, with IPAM's own check); once the
// storm is over and GC has run, no endpoint, no workload interface and no
// allocation is left and `tabby ipam check` is clean. Short form: 4 hosts,
// 300 ADD/DEL; full: 8 hosts, 2,000.
func TestPrivilegedChaosIPAMCrash(t *testing.T) {
	nodes, ops, workers := pick(4, 8), pick(300, 2000), pick(8, 16)
	quiet := slog.New(slog.DiscardHandler)
	e := up(t, lab.Config{Name: "ic", Nodes: nodes, Logger: quiet,
		AgentArgs: []string{"--gc-interval=2s"}})
	e.lab.SetLogger(quiet) // DELs refused by a dead agent are expected
	e.setGCGrace(5 * time.Second)
	var hosts []string
	for _, h := range e.lab.State().Hosts {
		hosts = append(hosts, h.Name)
	}

	var (
		mu       sync.Mutex
		live     = map[string]string{} // address → running container
		dups     []string
		addOK    atomic.Int64
		addFail  = map[string]int{} // by CNI code
		delFail  atomic.Int64
		kills    atomic.Int64
		next     atomic.Int64
		samples  atomic.Int64
		checks   atomic.Int64
		stopping = make(chan struct{})
	)
	noteDup := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(dups) < 20 {
			dups = append(dups, s)
		}
	}

	// The killer: SIGKILL a random agent, start it again a moment later.
	var bgWG sync.WaitGroup
	bgWG.Add(2)
	go func() {
		defer bgWG.Done()
		for {
			select {
			case <-stopping:
				return
			case <-time.After(time.Duration(500+rand.IntN(1500)) * time.Millisecond):
			}
			h := hosts[rand.IntN(len(hosts))]
			if err := e.lab.StopAgent(h, true); err != nil {
				t.Errorf("kill the agent of %s: %v", h, err)
				return
			}
			kills.Add(1)
			time.Sleep(time.Duration(100+rand.IntN(1400)) * time.Millisecond)
			if err := e.lab.StartAgent(context.Background(), h); err != nil {
				t.Errorf("start the agent of %s: %v", h, err)
				return
			}
		}
	}()
	// The sampler: no address in two endpoints, no address held twice.
	go func() {
		defer bgWG.Done()
		for i := 0; ; i++ {
			select {
			case <-stopping:
				return
			case <-time.After(250 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, d, err := e.duplicateAddrs(ctx)
			if err == nil {
				samples.Add(1)
				for _, s := range d {
					noteDup("endpoints: " + s)
				}
			}
			if i%8 == 0 {
				if rep, err := e.ipam.Check(ctx, nil); err == nil {
					checks.Add(1)
					for _, p := range rep.Problems {
						if p.Kind == ipam.ProblemHeldTwice || p.Kind == ipam.ProblemOverlap {
							noteDup("ipam check: " + p.String())
						}
					}
				}
			}
			cancel()
		}
	}()

	t0 := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(ops) {
					return
				}
				name := fmt.Sprintf("s%d", i)
				ctx, cancel := context.WithTimeout(context.Background(), hangBound)
				c, err := e.tryRun(ctx, name, hosts[rand.IntN(len(hosts))])
				cancel()
				if err != nil {
					code, ok := cniCode(err)
					key := fmt.Sprintf("code %d", code)
					if !ok {
						key = "other: " + firstLine(err.Error())
					}
					mu.Lock()
					addFail[key]++
					mu.Unlock()
					continue
				}
				addOK.Add(1)
				ip := c.IP().String()
				mu.Lock()
				if other, ok := live[ip]; ok {
					mu.Unlock()
					noteDup(fmt.Sprintf("containers: %s given to %s while %s runs", ip, name, other))
					mu.Lock()
				}
				live[ip] = name
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
				mu.Lock()
				delete(live, ip)
				mu.Unlock()
				if err := e.rm(name); err != nil {
					delFail.Add(1)
					t.Logf("remove %s: %v", name, err)
				}
			}
		}()
	}
	wg.Wait()
	storm := time.Since(t0)
	close(stopping)
	bgWG.Wait()
	for _, h := range hosts {
		if e.agentPID(h) == 0 {
			if err := e.lab.StartAgent(context.Background(), h); err != nil {
				t.Fatal(err)
			}
		}
	}
	var fails []string
	for k, n := range addFail {
		fails = append(fails, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(fails)
	figure(t, "storm", "%d ADD/DEL on %d hosts, %d at a time, in %s; %d agents killed", ops, nodes, workers, storm.Round(time.Second), kills.Load())
	figure(t, "ADDs", "%d succeeded, failed: %s", addOK.Load(), strings.Join(fails, ", "))
	figure(t, "duplicate addresses", "%d (%d endpoint samples, %d IPAM checks)", len(dups), samples.Load(), checks.Load())
	if len(dups) > 0 {
		t.Errorf("addresses held twice:\n%s", strings.Join(dups, "\n"))
	}
	if addOK.Load() < int64(ops)/2 {
		t.Errorf("only %d of %d ADDs succeeded", addOK.Load(), ops)
	}
	for k := range addFail {
		if k != "code 11" {
			t.Errorf("ADD failures other than code 11 (try again later): %s", strings.Join(fails, ", "))
			break
		}
	}
	cs, err := e.lab.Containers()
	if err != nil || len(cs) > 0 {
		t.Errorf("containers left in the lab: %d (%v)", len(cs), err)
	}
	took := waitUntil(t, "no endpoint, interface or allocation left after GC", 2*labWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return e.clean(ctx)
	})
	figure(t, "after the storm", "clean (no endpoint, no tby interface, no allocation, `tabby ipam check` OK) %s later", took.Round(100*time.Millisecond))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
