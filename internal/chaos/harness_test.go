package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/lab/labtest"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/testenv"
)

var (
	fullFlag   = flag.Bool("chaos.full", false, "run the full form of every scenario (make chaos)")
	reportFlag = flag.String("chaos.report", "", "append the measured figures to this file")
)

// labWait bounds every wait for convergence: the machine is shared and
// has two cores, so waits are generous; the figures say how long things
// really took.
const labWait = 90 * time.Second

// pick returns the short form's value, or the full form's with -chaos.full.
func pick[T any](short, full T) T {
	if *fullFlag {
		return full
	}
	return short
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	labtest.Cleanup()
	os.Exit(code)
}

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.Privileged(t)
	testenv.NeedTools(t, "ip", "ping")
}

// binaries builds tabby and tabby-cni once per test binary.
func binaries(t testing.TB) string { return labtest.Binaries(t) }

// labName is prefix plus 4 random hex digits (lab names are at most 8).
func labName(prefix string) string { return labtest.Name(prefix) }

func testLogger(t testing.TB, level slog.Level) *slog.Logger { return labtest.Logger(t, level) }

var reportMu sync.Mutex

// figure records a measured figure: in the test log and, with
// -chaos.report, in the report file.
func figure(t testing.TB, name, format string, args ...any) {
	t.Helper()
	v := fmt.Sprintf(format, args...)
	form := pick("short", "full")
	t.Logf("FIGURE %s [%s] %s: %s", t.Name(), form, name, v)
	if *reportFlag == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(*reportFlag, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\t%s\t%s\t%s\n", t.Name(), form, name, v)
}

// env is a lab under test.
type env struct {
	t *testing.T
	// root is the test that owns the lab: what must outlive a subtest
	// (a restarted datastore) is cleaned up with it.
	root   *testing.T
	lab    *lab.Lab
	cfg    lab.Config
	bin    string
	store  datastore.Store
	client *datastore.Client
	ipam   *ipam.IPAM
	// cliArgs say which datastore `tabby` commands of the test use
	// (default --lab NAME).
	cliArgs []string
}

// up brings a lab up; it is removed when the test ends (with the agents'
// logs printed when the test failed).
func up(t *testing.T, cfg lab.Config) *env {
	t.Helper()
	requireRoot(t)
	cfg.Name = labName(cfg.Name)
	cfg.BinDir = binaries(t)
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t, slog.LevelError)
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = labWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lab %s up in %s", cfg.Name, time.Since(t0).Round(time.Millisecond))
	e := &env{t: t, root: t, lab: l, cfg: cfg, bin: cfg.BinDir}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes() {
				if b, err := os.ReadFile(n.Log); err == nil {
					t.Logf("agent log of %s (last 4 KiB):\n%s", n.Name, tail(b, 4<<10))
				}
			}
		}
		if err := lab.Down(context.Background(), cfg.WithDefaults().StateRoot, cfg.Name, nil); err != nil {
			t.Errorf("lab down %s: %v", cfg.Name, err)
		}
	})
	if e.store, err = l.Store(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	e.client = datastore.NewClient(e.store)
	e.ipam = ipam.New(e.store, slog.New(slog.DiscardHandler))
	return e
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// run starts a container (sleeping) on node.
func (e *env) run(name, node string, labels ...string) *lab.Container {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := e.tryRun(ctx, name, node, labels...)
	if err != nil {
		e.t.Fatalf("run %s on %s: %v", name, node, err)
	}
	return c
}

func (e *env) tryRun(ctx context.Context, name, node string, labels ...string) (*lab.Container, error) {
	spec := lab.RunSpec{Name: name, Node: node, Command: []string{"sleep", "infinity"}}
	for _, l := range labels {
		kv, err := lab.ParseLabel(l)
		if err != nil {
			return nil, err
		}
		spec.Labels = append(spec.Labels, kv)
	}
	return e.lab.Run(ctx, spec)
}

// rm removes a container, even when its host's agent cannot answer DEL.
func (e *env) rm(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.lab.Remove(ctx, name, true)
}

func (e *env) host(name string) lab.Node {
	e.t.Helper()
	n, ok := e.lab.State().Node(name)
	if !ok {
		e.t.Fatalf("no node %s", name)
	}
	return n
}

// on runs argv on a lab node and returns its output.
func (e *env) on(node string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, err := e.lab.NodeCommand(ctx, node, argv)
	if err != nil {
		return "", err
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// in runs argv in a container and returns its output.
func (e *env) in(c *lab.Container, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, err := e.lab.ContainerCommand(ctx, c.Name, argv)
	if err != nil {
		return "", err
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cli runs `tabby --lab NAME ARGS...` in the root namespace, as a user.
func (e *env) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pre := e.cliArgs
	if pre == nil {
		pre = []string{"--lab", e.lab.Name()}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, lab.TabbyBinary), append(append([]string(nil), pre...), args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *env) apply(rs ...api.Resource) {
	e.t.Helper()
	for _, r := range rs {
		if _, _, err := e.client.Apply(context.Background(), r); err != nil {
			e.t.Fatalf("apply %s %s: %v", r.KindInfo().Kind, r.GetObjectMeta().Name, err)
		}
	}
}

// agentPID is the PID of node's agent (0 when it does not run).
func (e *env) agentPID(node string) int {
	for _, n := range e.lab.Nodes() {
		if n.Name == node && n.Running {
			return n.PID
		}
	}
	return 0
}

// datastorePID is the PID of the lab's etcd, from master/etcd.pid
// ("PID START", docs/lab.md), checked against /proc.
func (e *env) datastorePID() int {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.lab.Dir(), lab.MasterNode, "etcd.pid"))
	if err != nil {
		e.t.Fatal(err)
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		e.t.Fatalf("etcd.pid: %q", data)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		e.t.Fatalf("etcd.pid: %q", data)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		e.t.Fatalf("the datastore (pid %d) does not run: %v", pid, err)
	}
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || len(strings.Fields(string(stat[i+1:]))) < 20 || strings.Fields(string(stat[i+1:]))[19] != f[1] {
		e.t.Fatalf("pid %d is not the lab's datastore any more", pid)
	}
	return pid
}

// waitUntil polls f until it succeeds, failing the test after d; it
// returns how long it took.
func waitUntil(t testing.TB, what string, d time.Duration, f func() error) time.Duration {
	t.Helper()
	t0 := time.Now()
	deadline := t0.Add(d)
	for {
		err := f()
		if err == nil {
			return time.Since(t0)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reach waits until a pings b, then checks ICMP and TCP once more.
func (e *env) reach(a, b *lab.Container) time.Duration {
	e.t.Helper()
	took := waitUntil(e.t, fmt.Sprintf("%s (%s) reaches %s (%s)", a.Name, a.IP(), b.Name, b.IP()), labWait, func() error {
		out, err := e.in(a, "ping", "-c", "1", "-W", "1", b.IP().String())
		if err != nil {
			return fmt.Errorf("%v: %s", err, lastLine(out))
		}
		return nil
	})
	if err := lab.TCPEcho(a, b); err != nil {
		e.t.Fatalf("TCP from %s (%s) to %s (%s): %v", a.Name, a.IP(), b.Name, b.IP(), err)
	}
	return took
}

// pings reports whether a reaches b with ICMP within about two seconds.
func (e *env) pings(a, b *lab.Container) bool {
	_, err := e.in(a, "ping", "-c", "2", "-i", "0.5", "-W", "1", b.IP().String())
	return err == nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bg is a process the test started in the background (in a container or
// on a node); it is killed, by PID, when the test ends.
type bg struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

func (e *env) startIn(c *lab.Container, argv ...string) *bg {
	e.t.Helper()
	cmd, err := e.lab.ContainerCommand(context.Background(), c.Name, argv)
	if err != nil {
		e.t.Fatal(err)
	}
	return startBG(e.t, cmd)
}

func startBG(t testing.TB, cmd *exec.Cmd) *bg {
	t.Helper()
	b := &bg{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = b.out, b.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			_ = cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// wait waits up to d for the process to end and returns its output.
func (b *bg) wait(d time.Duration) (string, error) {
	select {
	case <-b.done:
		return b.out.String(), b.err
	case <-time.After(d):
		_ = b.cmd.Process.Kill()
		<-b.done
		return b.out.String(), fmt.Errorf("%v: still running after %s (killed)", b.cmd.Args, d)
	}
}

// pinger is `ping -i 0.01` from one container to another.
type pinger struct {
	*bg
	count int
	from  string
	to    string
}

// startPing pings b from a every 10 ms for about d.
func (e *env) startPing(a, b *lab.Container, d time.Duration) *pinger {
	e.t.Helper()
	n := int(d / (10 * time.Millisecond))
	p := e.startIn(a, "ping", "-i", "0.01", "-c", strconv.Itoa(n), "-W", "1", "-q", b.IP().String())
	return &pinger{bg: p, count: n, from: a.Name, to: b.Name}
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// result waits for the ping to end and returns how many were sent and lost.
func (p *pinger) result(t testing.TB) (sent, lost int) {
	t.Helper()
	out, _ := p.wait(time.Duration(p.count)*10*time.Millisecond + labWait)
	m := pingStats.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ping %s → %s: no statistics in:\n%s", p.from, p.to, out)
	}
	sent, _ = strconv.Atoi(m[1])
	recv, _ := strconv.Atoi(m[2])
	return sent, sent - recv
}

// iperf is an iperf3 TCP flow between two containers.
type iperf struct {
	server, client *bg
	secs           int
}

// startIperf runs iperf3 from client to server for secs seconds.
func (e *env) startIperf(server, client *lab.Container, secs int) *iperf {
	e.t.Helper()
	testenv.NeedTool(e.t, "iperf3")
	srv := e.startIn(server, "iperf3", "-s", "-1", "--forceflush", "-B", server.IP().String())
	waitUntil(e.t, "iperf3 server listening", 10*time.Second, func() error {
		if strings.Contains(srv.out.String(), "Server listening") {
			return nil
		}
		return errors.New("not yet")
	})
	cli := e.startIn(client, "iperf3", "-c", server.IP().String(), "-t", strconv.Itoa(secs), "-i", "1", "-J")
	return &iperf{server: srv, client: cli, secs: secs}
}

// iperfResult is what the test reads of iperf3's JSON report.
type iperfResult struct {
	Intervals []struct {
		Sum struct {
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum"`
	} `json:"intervals"`
	End struct {
		SumSent struct {
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
	} `json:"end"`
	Error string `json:"error"`
}

// result waits for the flow to end; it fails the test when the flow broke
// or stalled for a whole second.
func (f *iperf) result(t testing.TB) iperfResult {
	t.Helper()
	out, err := f.client.wait(time.Duration(f.secs)*time.Second + labWait)
	var r iperfResult
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		t.Fatalf("iperf3: %v (%v):\n%s", err, jerr, out)
	}
	if r.Error != "" || err != nil {
		t.Fatalf("iperf3 flow broke: %s (%v)", r.Error, err)
	}
	for i, iv := range r.Intervals {
		if iv.Sum.Bytes == 0 {
			t.Errorf("iperf3: second %d carried no data (the flow stalled)", i+1)
		}
	}
	return r
}

// minMbps is the slowest one-second interval of a flow.
func (r iperfResult) minMbps() float64 {
	m := -1.0
	for _, iv := range r.Intervals {
		if v := iv.Sum.BitsPerSecond / 1e6; m < 0 || v < m {
			m = v
		}
	}
	return m
}

// cniCode returns the CNI error code in err, if any.
func cniCode(err error) (uint, bool) {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code, true
	}
	return 0, false
}

// workloadIPs lists the addresses of every WorkloadEndpoint and returns
// those held by more than one.
func (e *env) duplicateAddrs(ctx context.Context) (endpoints int, dups []string, err error) {
	rs, _, err := e.client.List(ctx, "WorkloadEndpoint", "")
	if err != nil {
		return 0, nil, err
	}
	holders := map[string][]string{}
	for _, r := range rs {
		w := r.(*api.WorkloadEndpoint)
		for _, n := range w.Spec.IPNetworks {
			holders[n] = append(holders[n], w.Namespace+"/"+w.Name)
		}
	}
	for a, hs := range holders {
		if len(hs) > 1 {
			dups = append(dups, fmt.Sprintf("%s held by %v", a, hs))
		}
	}
	return len(rs), dups, nil
}

// strayLinks lists the workload interfaces (tby…) on node.
func (e *env) strayLinks(node string) ([]string, error) {
	out, err := e.on(node, "ip", "-o", "link", "show")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var links []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], "tby") {
			links = append(links, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	return links, nil
}

// clean checks what an IPAM-and-endpoints audit checks after GC: no
// WorkloadEndpoint, no workload interface on any node, no allocation,
// and `tabby ipam check` clean.
func (e *env) clean(ctx context.Context) error {
	weps, _, err := e.client.List(ctx, "WorkloadEndpoint", "")
	if err != nil {
		return err
	}
	if len(weps) > 0 {
		return fmt.Errorf("%d WorkloadEndpoint(s) left, e.g. %s", len(weps), weps[0].GetObjectMeta().Name)
	}
	for _, n := range e.lab.State().AgentNodes() {
		links, err := e.strayLinks(n.Name)
		if err != nil {
			return err
		}
		if len(links) > 0 {
			return fmt.Errorf("stray workload interfaces on %s: %v", n.Name, links)
		}
	}
	rep, err := e.ipam.Check(ctx, nil)
	if err != nil {
		return err
	}
	if !rep.OK() || rep.Allocations > 0 || rep.InFlight > 0 {
		return fmt.Errorf("IPAM: %d allocation(s) (%d in flight), problems %v", rep.Allocations, rep.InFlight, rep.Problems)
	}
	if out, err := e.cli("ipam", "check"); err != nil {
		return fmt.Errorf("tabby ipam check: %v:\n%s", err, out)
	}
	return nil
}

// setGCGrace makes the agents' GC release leaks after grace (they run GC
// every --gc-interval).
func (e *env) setGCGrace(grace time.Duration) {
	e.t.Helper()
	e.apply(&api.IPAMConfig{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "IPAMConfig"},
		ObjectMeta: api.ObjectMeta{Name: "default"},
		Spec:       api.IPAMConfigSpec{LeakGracePeriod: &api.Duration{Duration: grace}},
	})
}
