package routinglab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/lab/labtest"

	"github.com/tabbynet/tabby/internal/agent/routing/router"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/testenv"
)

// labWait bounds every wait for convergence (the machine is shared).
const labWait = 90 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Cleanup()
	os.Exit(code)
}

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.Privileged(t)
	testenv.NeedTool(t, "ip")
}

// binaries builds tabby and tabby-cni once per test binary.
func binaries(t testing.TB) string { return labtest.Binaries(t) }

// labName is prefix plus 4 random hex digits (lab names are at most 8).
func labName(prefix string) string { return labtest.Name(prefix) }

func testLogger(t testing.TB) *slog.Logger { return labtest.Logger(t, slog.LevelWarn) }

// env is a lab under test.
type env struct {
	t      testing.TB
	lab    *lab.Lab
	bin    string
	store  datastore.Store
	client *datastore.Client
}

// up brings a lab up; it is removed when the test ends (agent logs are
// printed when the test failed).
func up(t testing.TB, cfg lab.Config) *env {
	t.Helper()
	requireRoot(t)
	cfg.Name = labName(cfg.Name)
	cfg.BinDir = binaries(t)
	cfg.Logger = testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, lab: l, bin: cfg.BinDir}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes() {
				if b, err := os.ReadFile(n.Log); err == nil {
					t.Logf("agent log of %s (last 6 KiB):\n%s", n.Name, tail(b, 6<<10))
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
	return e
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// run starts a container (sleeping) on node.
func (e *env) run(name, node string) *lab.Container {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := e.lab.Run(ctx, lab.RunSpec{Name: name, Node: node, Command: []string{"sleep", "infinity"}})
	if err != nil {
		e.t.Fatalf("run %s on %s: %v", name, node, err)
	}
	return c
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
	cmd, err := e.lab.NodeCommand(context.Background(), node, argv)
	if err != nil {
		return "", err
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// in runs argv in a container and returns its output.
func (e *env) in(c *lab.Container, argv ...string) (string, error) {
	cmd, err := e.lab.ContainerCommand(context.Background(), c.Name, argv)
	if err != nil {
		return "", err
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// routes are the routes Tabby's router keeps on node (IPv4, then IPv6).
func (e *env) routes(node string) string {
	e.t.Helper()
	out, err := e.on(node, "ip", "route", "show", "proto", "85")
	if err != nil {
		e.t.Fatalf("routes of %s: %v\n%s", node, err, out)
	}
	out6, err := e.on(node, "ip", "-6", "route", "show", "proto", "85")
	if err != nil {
		e.t.Fatalf("IPv6 routes of %s: %v\n%s", node, err, out6)
	}
	return out + out6
}

// waitRoute waits until node has (present) or lacks a route line
// containing all of the parts.
func (e *env) waitRoute(node string, present bool, parts ...string) {
	e.t.Helper()
	deadline := time.Now().Add(labWait)
	for {
		out := e.routes(node)
		found := false
		for _, line := range strings.Split(out, "\n") {
			all := line != ""
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			found = found || all
		}
		if found == present {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: a route with %q present=%v not reached in %s; routes:\n%s", node, parts, present, labWait, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func block(c *lab.Container) string { return netip.PrefixFrom(c.IP(), 26).Masked().String() }

// reach checks ICMP and TCP from container a to container b.
func (e *env) reach(a, b *lab.Container) {
	e.t.Helper()
	deadline := time.Now().Add(labWait)
	for {
		out, err := e.in(a, "ping", "-c", "1", "-W", "1", b.IP().String())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no ICMP from %s (%s) to %s (%s) in %s:\n%s", a.Name, a.IP(), b.Name, b.IP(), labWait, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if out, err := e.in(a, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", b.IP().String()); err != nil {
		e.t.Fatalf("ICMP from %s to %s lost packets: %v\n%s", a.Name, b.Name, err, out)
	}
	if err := lab.TCPEcho(a, b); err != nil {
		e.t.Fatalf("TCP from %s (%s) to %s (%s): %v", a.Name, a.IP(), b.Name, b.IP(), err)
	}
}

// reach6 checks ICMPv6 (the real ping -6) and TCP over IPv6 from
// container a to container b.
func (e *env) reach6(a, b *lab.Container) {
	e.t.Helper()
	deadline := time.Now().Add(labWait)
	for {
		out, err := e.in(a, "ping", "-6", "-n", "-c", "1", "-W", "1", b.IP6().String())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no ICMPv6 from %s (%s) to %s (%s) in %s:\n%s", a.Name, a.IP6(), b.Name, b.IP6(), labWait, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if out, err := e.in(a, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "-q", b.IP6().String()); err != nil {
		e.t.Fatalf("ICMPv6 from %s to %s lost packets: %v\n%s", a.Name, b.Name, err, out)
	}
	if err := lab.TCPEchoIn(a.NetNS, b.NetNS, b.IP6()); err != nil {
		e.t.Fatalf("TCP over IPv6 from %s (%s) to %s (%s): %v", a.Name, a.IP6(), b.Name, b.IP6(), err)
	}
}

func block6(c *lab.Container) string { return netip.PrefixFrom(c.IP6(), 122).Masked().String() }

// status runs `tabby node status -o json` on node, as an operator would
// (tabby lab ssh NAME NODE -- tabby node status).
func (e *env) status(node string) (*router.Status, error) {
	out, err := e.on(node, filepath.Join(e.bin, "tabby"), "node", "status", "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("tabby node status on %s: %v\n%s", node, err, out)
	}
	var st router.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("decode the status of %s: %v\n%s", node, err, out)
	}
	return &st, nil
}

// statusText runs `tabby node status` (the table) on node.
func (e *env) statusText(node string) string {
	e.t.Helper()
	out, err := e.on(node, filepath.Join(e.bin, "tabby"), "node", "status")
	if err != nil {
		e.t.Fatalf("tabby node status on %s: %v\n%s", node, err, out)
	}
	return out
}

// waitPeersUp waits until every BGP session of node is established and
// returns the status.
func (e *env) waitPeersUp(node string, n int) *router.Status {
	e.t.Helper()
	deadline := time.Now().Add(labWait)
	for {
		st, err := e.status(node)
		if err == nil && len(st.Peers) == n {
			up := 0
			for _, p := range st.Peers {
				if p.State == "up" {
					up++
				}
			}
			if up == n {
				return st
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %d established sessions not reached: %+v %v", node, n, st, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// updateNode changes a Node with compare-and-swap (the agents write it too).
func (e *env) updateNode(name string, f func(*api.Node)) {
	e.t.Helper()
	for range datastore.MaxRetries {
		r, err := e.client.Get(context.Background(), "Node", "", name)
		if err != nil {
			e.t.Fatal(err)
		}
		n := r.(*api.Node)
		f(n)
		_, err = e.client.Update(context.Background(), n)
		if errors.Is(err, datastore.ErrConflict) {
			continue
		}
		if err != nil {
			e.t.Fatalf("update node %s: %v", name, err)
		}
		return
	}
	e.t.Fatalf("update node %s: too many conflicts", name)
}

func (e *env) apply(rs ...api.Resource) {
	e.t.Helper()
	for _, r := range rs {
		if _, _, err := e.client.Apply(context.Background(), r); err != nil {
			e.t.Fatalf("apply %s %s: %v", r.KindInfo().Kind, r.GetObjectMeta().Name, err)
		}
	}
}

// kernelHasIPIP probes for IP-in-IP support in a scratch namespace.
func kernelHasIPIP(t testing.TB) (bool, string) {
	t.Helper()
	ns := "tbyprobe-" + labName("")
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	out, err := exec.Command("ip", "-n", ns, "link", "add", "tbyprobe0", "type", "ipip").CombinedOutput()
	if err != nil {
		return false, strings.TrimSpace(string(out))
	}
	return true, ""
}
