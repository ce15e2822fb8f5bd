package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/lab"
)

// TestPrivilegedChaosDeadContainers: during a burst of ADDs, half the
// containers die without CNI DEL (processes killed, namespace deleted,
// as after a runtime crash), the others are removed normally. No address
// is given to a new container while a dead one's endpoint still lists it;
// with IPAM GC out of the way (--gc-interval=1h) the agents' reapers alone
// leave no endpoint, interface or allocation, `tabby ipam check` clean; the
// runtimes' late DELs then succeed. Short form: 2 hosts, 120 ADDs; full:
// 4 hosts, 600.
func TestPrivilegedChaosDeadContainers(t *testing.T) {
	nodes, ops, workers := pick(2, 4), pick(120, 600), pick(6, 12)
	quiet := slog.New(slog.DiscardHandler)
	e := up(t, lab.Config{Name: "dc", Nodes: nodes, Logger: quiet, AgentArgs: []string{"--gc-interval=1h"}})
	var hosts []string
	for _, h := range e.lab.State().Hosts {
		hosts = append(hosts, h.Name)
	}
	var (
		mu       sync.Mutex
		dups     []string
		crashed  = map[string]time.Time{} // container ID → when it died
		names    []string                 // crashed containers' names
		addOK    atomic.Int64
		addFail  atomic.Int64
		next     atomic.Int64
		stopping = make(chan struct{})
	)
	noteDup := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(dups) < 20 {
			dups = append(dups, s)
		}
	}

	// The tracker: how long each dead container's endpoint outlives it.
	var reapTimes []time.Duration
	var bgWG sync.WaitGroup
	bgWG.Add(1)
	go func() {
		defer bgWG.Done()
		for {
			select {
			case <-stopping:
				return
			case <-time.After(200 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			rs, _, err := e.client.List(ctx, "WorkloadEndpoint", "")
			cancel()
			if err != nil {
				continue
			}
			present := map[string]bool{}
			for _, r := range rs {
				present[r.(*api.WorkloadEndpoint).Spec.ContainerID] = true
			}
			mu.Lock()
			for id, at := range crashed {
				if !present[id] {
					reapTimes = append(reapTimes, time.Since(at))
					delete(crashed, id)
				}
			}
			mu.Unlock()
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
				e.deadOrAlive(fmt.Sprintf("d%d", i), hosts[rand.IntN(len(hosts))], &addOK, &addFail, noteDup, func(c *lab.Container) {
					mu.Lock()
					crashed[c.ContainerID] = time.Now()
					names = append(names, c.Name)
					mu.Unlock()
				})
			}
		}()
	}
	wg.Wait()
	burst := time.Since(t0)
	took := waitUntil(t, "no endpoint, interface or allocation left (reapers only, no GC)", labWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return e.clean(ctx)
	})
	time.Sleep(300 * time.Millisecond) // one more tracker sample
	close(stopping)
	bgWG.Wait()

	mu.Lock()
	sort.Slice(reapTimes, func(i, j int) bool { return reapTimes[i] < reapTimes[j] })
	dead := len(names)
	figure(t, "burst", "%d ADDs on %d hosts, %d at a time, in %s: %d succeeded, %d failed; %d died without DEL, the rest removed with DEL",
		ops, nodes, workers, burst.Round(time.Second), addOK.Load(), addFail.Load(), dead)
	if len(reapTimes) > 0 {
		figure(t, "dead container → endpoint gone", "median %s, max %s (%d measured, 200 ms samples)",
			reapTimes[len(reapTimes)/2].Round(100*time.Millisecond), reapTimes[len(reapTimes)-1].Round(100*time.Millisecond), len(reapTimes))
	}
	figure(t, "after the burst", "clean (no endpoint, no tby interface, no allocation, `tabby ipam check` OK) %s later", took.Round(100*time.Millisecond))
	figure(t, "duplicate addresses", "%d", len(dups))
	if len(dups) > 0 {
		t.Errorf("addresses held twice:\n%s", strings.Join(dups, "\n"))
	}
	if addFail.Load() > 0 {
		t.Errorf("%d ADDs failed", addFail.Load())
	}
	if dead == 0 {
		t.Fatalf("no container died: the scenario tested nothing")
	}
	crashedNames := slices.Clone(names)
	mu.Unlock()

	// The runtimes come back and send their DELs: each succeeds, and
	// changes nothing.
	for _, n := range crashedNames {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := e.lab.Remove(ctx, n, false)
		cancel()
		if err != nil {
			t.Errorf("late DEL of %s: %v", n, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.clean(ctx); err != nil {
		t.Errorf("after the late DELs: %v", err)
	}
}

// deadOrAlive starts a container, checks that its address is listed by no
// other endpoint, and then either crashes it (no DEL) or removes it.
func (e *env) deadOrAlive(name, host string, addOK, addFail *atomic.Int64, noteDup func(string), died func(*lab.Container)) {
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	c, err := e.tryRun(ctx, name, host)
	cancel()
	if err != nil {
		addFail.Add(1)
		e.t.Logf("run %s: %v", name, err)
		return
	}
	addOK.Add(1)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	_, d, err := e.duplicateAddrs(ctx)
	cancel()
	if err == nil {
		for _, s := range d {
			noteDup(fmt.Sprintf("after ADD of %s (%s): %s", name, c.IP(), s))
		}
	}
	time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
	if rand.IntN(2) == 0 {
		if err := e.lab.Crash(context.Background(), name); err != nil {
			e.t.Errorf("crash %s: %v", name, err)
			return
		}
		died(c)
		return
	}
	if err := e.rm(name); err != nil {
		e.t.Errorf("remove %s: %v", name, err)
	}
}
