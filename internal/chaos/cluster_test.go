package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/lab"
)

// etcdCluster is a real 3-member etcd cluster (`tabby datastore run`
// processes) on three master namespaces of the test's own, joined by a
// bridge in a fourth: members talk over TCP on 192.0.2.0/24 (TEST-NET-1,
// inside those namespaces only); clients reach each member through a unix
// socket in a temporary directory, which the lab's agents see too.
type etcdCluster struct {
	t       *testing.T
	bin     string
	prefix  string
	dir     string
	members []*member
}

type member struct {
	name, ns, sock string
	argv           []string
	proc           *bg
}

// ipNetns runs `ip ARGS...`.
func ipNetns(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newEtcdCluster(t *testing.T, bin string) *etcdCluster {
	t.Helper()
	c := &etcdCluster{t: t, bin: bin, prefix: labName("tcx"), dir: t.TempDir()}
	net := c.prefix + "-net"
	nss := []string{net}
	t.Cleanup(func() {
		for _, m := range c.members {
			if m.proc != nil {
				_ = m.proc.cmd.Process.Kill()
				<-m.proc.done
			}
		}
		for _, ns := range nss {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	ipNetns(t, "netns", "add", net)
	ipNetns(t, "-n", net, "link", "add", "br0", "type", "bridge")
	ipNetns(t, "-n", net, "link", "set", "br0", "up")
	var initial []string
	for i := 1; i <= 3; i++ {
		initial = append(initial, fmt.Sprintf("m%d=http://192.0.2.%d:2380", i, i))
	}
	for i := 1; i <= 3; i++ {
		m := &member{name: fmt.Sprintf("m%d", i), ns: fmt.Sprintf("%s-m%d", c.prefix, i)}
		m.sock = filepath.Join(c.dir, m.name+".sock")
		ipNetns(t, "netns", "add", m.ns)
		nss = append(nss, m.ns)
		ipNetns(t, "-n", net, "link", "add", m.name, "type", "veth", "peer", "name", "eth0", "netns", m.ns)
		ipNetns(t, "-n", net, "link", "set", m.name, "master", "br0", "up")
		ipNetns(t, "-n", m.ns, "addr", "add", fmt.Sprintf("192.0.2.%d/24", i), "dev", "eth0")
		ipNetns(t, "-n", m.ns, "link", "set", "eth0", "up")
		ipNetns(t, "-n", m.ns, "link", "set", "lo", "up")
		m.argv = []string{"ip", "netns", "exec", m.ns, filepath.Join(bin, lab.TabbyBinary), "datastore", "run",
			"--name", m.name, "--data-dir", filepath.Join(c.dir, m.name),
			"--listen", "unix://" + m.sock,
			"--listen-peer", fmt.Sprintf("http://192.0.2.%d:2380", i),
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-token", c.prefix, "--log-level", "error"}
		c.members = append(c.members, m)
	}
	for i := range c.members {
		c.start(i)
	}
	waitUntil(t, "the 3-member etcd cluster has a leader", labWait, func() error {
		s, err := c.store()
		if err != nil {
			return err
		}
		return s.Close()
	})
	return c
}

func (c *etcdCluster) start(i int) {
	m := c.members[i]
	m.proc = startBG(c.t, exec.Command(m.argv[0], m.argv[1:]...))
}

func (c *etcdCluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, "unix://"+m.sock)
	}
	return eps
}

func (c *etcdCluster) store() (*etcd.Store, error) {
	return etcd.Open(etcd.Config{Endpoints: c.endpoints(), DialTimeout: 5 * time.Second})
}

// leader returns the index of the member that leads (-1: none known),
// asking every member except skip.
func (c *etcdCluster) leader(skip int) int {
	ids := map[uint64]int{}
	var lead uint64
	for i, m := range c.members {
		if i == skip {
			continue
		}
		s, err := etcd.Open(etcd.Config{Endpoints: []string{"unix://" + m.sock}, DialTimeout: time.Second})
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := s.Client().Status(ctx, "unix://"+m.sock)
		cancel()
		s.Close()
		if err != nil {
			continue
		}
		ids[st.Header.MemberId] = i
		if st.Leader != 0 {
			lead = st.Leader
		}
	}
	if i, ok := ids[lead]; ok && lead != 0 {
		return i
	}
	return -1
}

// kill SIGKILLs member i (by PID) and waits until it is gone.
func (c *etcdCluster) kill(i int) {
	p := c.members[i].proc
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// TestPrivilegedChaosEtcdCluster: the agents use a real 3-member etcd
// cluster (three masters); during a storm of ADDs the leader is killed
// with SIGKILL (and started again once a new leader is elected). No
// address is given twice, every ADD that succeeded has its endpoint and
// its allocation, and no ADD that started after the new leader was
// elected (plus the agents' datastore timeout) fails.
func TestPrivilegedChaosEtcdCluster(t *testing.T) {
	requireRoot(t)
	bin := binaries(t)
	cl := newEtcdCluster(t, bin)
	cs, err := cl.store()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	client := datastore.NewClient(cs)
	if _, err := client.Create(context.Background(), &api.IPPool{
		ObjectMeta: api.ObjectMeta{Name: lab.PoolName},
		Spec:       api.IPPoolSpec{CIDR: lab.DefaultPool.String(), IPIPMode: api.EncapNever, VXLANMode: api.EncapNever},
	}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	e := up(t, lab.Config{Name: "ec", Nodes: 3, Logger: quiet,
		AgentArgs: []string{"--datastore=" + strings.Join(cl.endpoints(), ",")}})
	e.lab.SetLogger(quiet)
	// From here on, the lab's datastore is the cluster.
	e.store, e.client = cs, client
	e.ipam = ipam.New(cs, quiet)
	e.cliArgs = []string{"--datastore", strings.Join(cl.endpoints(), ",")}

	adds, kills, workers := pick(90, 450), pick(1, 3), 8
	var hosts []string
	for _, h := range e.lab.State().Hosts {
		hosts = append(hosts, h.Name)
	}
	type result struct {
		name       string
		start, end time.Time
		err        error
	}
	var (
		mu      sync.Mutex
		results []result
		next    atomic.Int64
		windows [][2]time.Time // kill → new leader
	)
	t0 := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(adds) {
					return
				}
				r := result{name: fmt.Sprintf("e%d", i), start: time.Now()}
				ctx, cancel := context.WithTimeout(context.Background(), hangBound)
				_, r.err = e.tryRun(ctx, r.name, hosts[rand.IntN(len(hosts))])
				cancel()
				r.end = time.Now()
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	var electionTimes []string
	for k := range kills {
		// Kill at evenly spread points of the storm.
		for next.Load() < int64(adds*(k+1)/(kills+1)) {
			time.Sleep(20 * time.Millisecond)
		}
		var l int
		waitUntil(t, "the cluster has a leader", labWait, func() error {
			if l = cl.leader(-1); l < 0 {
				return errors.New("no leader")
			}
			return nil
		})
		killed := time.Now()
		cl.kill(l)
		var elected time.Time
		waitUntil(t, "a new leader is elected", labWait, func() error {
			if cl.leader(l) < 0 {
				return errors.New("no leader yet")
			}
			elected = time.Now()
			return nil
		})
		mu.Lock()
		windows = append(windows, [2]time.Time{killed, elected})
		mu.Unlock()
		electionTimes = append(electionTimes, elected.Sub(killed).Round(10*time.Millisecond).String())
		cl.start(l) // it rejoins from its data
	}
	wg.Wait()
	storm := time.Since(t0)

	// Failures must overlap an election window (stretched by the agents'
	// datastore timeout, which bounds a request sent to the dead leader).
	const slack = 4 * time.Second
	var ok []string
	var failed, outside []string
	for _, r := range results {
		if r.err == nil {
			ok = append(ok, r.name)
			continue
		}
		code, _ := cniCode(r.err)
		failed = append(failed, fmt.Sprintf("%s (code %d)", r.name, code))
		in := false
		for _, w := range windows {
			in = in || !r.end.Before(w[0]) && !r.start.After(w[1].Add(slack))
		}
		if !in || code != 11 {
			outside = append(outside, fmt.Sprintf("%s [%s, %s] code %d: %v", r.name,
				r.start.Sub(t0).Round(time.Millisecond), r.end.Sub(t0).Round(time.Millisecond), code, r.err))
		}
	}
	figure(t, "storm", "%d ADDs on 3 hosts, %d at a time, in %s; leader killed %d time(s), new leader after %s",
		adds, workers, storm.Round(100*time.Millisecond), kills, strings.Join(electionTimes, ", "))
	figure(t, "failed ADDs", "%d (%s), %d outside the election windows", len(failed), strings.Join(failed, ", "), len(outside))
	for _, o := range outside {
		t.Errorf("ADD failed outside an election window (or not with code 11): %s", o)
	}

	// No lost endpoint, no duplicate: every container that got an address
	// has its endpoint with that address, and IPAM agrees.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	containers, err := e.lab.Containers()
	if err != nil {
		t.Fatal(err)
	}
	weps, _, err := client.List(ctx, "WorkloadEndpoint", "")
	if err != nil {
		t.Fatal(err)
	}
	byContainer := map[string]*api.WorkloadEndpoint{}
	for _, r := range weps {
		w := r.(*api.WorkloadEndpoint)
		byContainer[w.Spec.ContainerID] = w
	}
	seen := map[string]string{}
	for _, c := range containers {
		w := byContainer[c.ContainerID]
		switch {
		case w == nil:
			t.Errorf("container %s (%s) has no endpoint: lost", c.Name, c.IP())
		case len(w.Spec.IPNetworks) != 1 || w.Spec.IPNetworks[0] != c.IPs[0].String():
			t.Errorf("container %s has %v, its endpoint lists %v", c.Name, c.IPs, w.Spec.IPNetworks)
		}
		if o, dup := seen[c.IP().String()]; dup {
			t.Errorf("address %s given to %s and %s", c.IP(), o, c.Name)
		}
		seen[c.IP().String()] = c.Name
	}
	if len(weps) != len(containers) || len(containers) != len(ok) {
		t.Errorf("%d endpoints, %d containers, %d successful ADDs: want them equal", len(weps), len(containers), len(ok))
	}
	rep, err := e.ipam.Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Allocations != len(containers) {
		t.Errorf("IPAM after the storm: %d allocations for %d containers, problems %v", rep.Allocations, len(containers), rep.Problems)
	}
	figure(t, "after the storm", "%d containers, %d endpoints, %d allocations, IPAM check problems: %d", len(containers), len(weps), rep.Allocations, len(rep.Problems))

	// Every container can be removed, and nothing is left.
	names := make([]string, 0, len(containers))
	for _, c := range containers {
		names = append(names, c.Name)
	}
	sort.Strings(names)
	var rwg sync.WaitGroup
	sem := make(chan struct{}, workers)
	for _, n := range names {
		rwg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; rwg.Done() }()
			if err := e.lab.Remove(context.Background(), n, false); err != nil {
				t.Errorf("remove %s: %v", n, err)
			}
		}()
	}
	rwg.Wait()
	waitUntil(t, "nothing left after removing every container", labWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return e.clean(ctx)
	})
}
