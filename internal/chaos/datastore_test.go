package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/lab"
)

// TestPrivilegedChaosDatastoreOutage: the datastore stops for 10 s while
// a ping (every 10 ms) and an iperf3 TCP flow run between containers on
// two hosts. Established flows lose nothing; an ADD during the outage
// fails with CNI code 11 within 5 s instead of hanging; after recovery
// ADDs work again and every agent — still the same process — follows
// datastore changes (a policy applied afterwards takes effect on both
// hosts). The short form freezes etcd (SIGSTOP: connections stay open and
// nothing answers, the harder case for clients); the full form also kills
// it and starts it again on its data.
func TestPrivilegedChaosDatastoreOutage(t *testing.T) {
	e := up(t, lab.Config{Name: "do", Nodes: 2})
	a := e.run("a", "h1", "role=a")
	b := e.run("b", "h2", "role=b")
	e.reach(a, b)
	before := map[string]int{}
	for _, n := range e.lab.Nodes() {
		before[n.Name] = n.PID
	}
	for _, mode := range pick([]string{"stop"}, []string{"stop", "kill"}) {
		t.Run(mode, func(t *testing.T) {
			e := e.sub(t)
			outage := 10 * time.Second
			ping := e.startPing(a, b, outage+5*time.Second)
			flow := e.startIperf(b, a, int((outage + 5*time.Second).Seconds()))
			time.Sleep(2 * time.Second)

			resume := e.stopDatastore(mode)
			down := time.Now()
			time.Sleep(2 * time.Second)
			add := e.cniAttempt("h1", hangBound)
			code, _ := cniCode(add.Err)
			figure(t, "ADD during the outage", "failed after %s with CNI code %d", add.Took.Round(10*time.Millisecond), code)
			if add.Err == nil {
				t.Errorf("ADD during the outage: got address %s, want CNI error 11", add.IP)
			} else if code != 11 || add.Took > failFast {
				t.Errorf("ADD during the outage: got code %d after %s (%v), want code 11 within %s", code, add.Took, add.Err, failFast)
			}
			time.Sleep(time.Until(down.Add(outage)))
			resume()
			back := time.Now()

			// An ADD works again (the agents never restarted).
			var first time.Duration
			waitUntil(t, "an ADD after the outage", labWait, func() error {
				at := e.cniAttempt("h2", hangBound)
				if at.Err != nil {
					return at.Err
				}
				first = time.Since(back)
				return nil
			})
			figure(t, "first successful ADD after the datastore is back", "%s", first.Round(10*time.Millisecond))

			sent, lost := ping.result(t)
			figure(t, "ping -i 0.01 across the outage", "%d sent, %d lost", sent, lost)
			if lost != 0 {
				t.Errorf("established ping lost %d of %d packets across the datastore outage", lost, sent)
			}
			r := flow.result(t)
			figure(t, "iperf3 TCP across the outage", "%.0f Mbit/s, slowest second %.0f Mbit/s, %d retransmits",
				r.End.SumSent.BitsPerSecond/1e6, r.minMbps(), r.End.SumSent.Retransmits)
		})
	}
	for _, n := range e.lab.Nodes() {
		if n.PID != before[n.Name] || !n.Running {
			t.Errorf("agent of %s: pid %d (running %v), was %d: it restarted", n.Name, n.PID, n.Running, before[n.Name])
		}
	}
	// Every agent follows the datastore again: a policy written now takes
	// effect on h1 (a's egress) and on h2 (b's ingress), and its removal too.
	for _, tc := range []struct{ name, selector, typ string }{
		{"egress of a (h1)", "role == 'a'", "Egress"},
		{"ingress of b (h2)", "role == 'b'", "Ingress"},
	} {
		np := &api.NetworkPolicy{
			ObjectMeta: api.ObjectMeta{Name: "chaos-deny", Namespace: "default"},
			Spec:       api.NetworkPolicySpec{Selector: tc.selector, Types: []string{tc.typ}},
		}
		e.apply(np)
		took := waitUntil(t, "policy on the "+tc.name+" takes effect", labWait, func() error {
			if e.pings(a, b) {
				return fmt.Errorf("a still reaches b")
			}
			return nil
		})
		figure(t, "policy after recovery, "+tc.name, "enforced within %s", took.Round(10*time.Millisecond))
		if _, err := e.client.Delete(context.Background(), "NetworkPolicy", "default", "chaos-deny", ""); err != nil {
			t.Fatal(err)
		}
		e.reach(a, b)
	}
}

// sub is e for a subtest (fatal errors stop the subtest).
func (e *env) sub(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// stopDatastore makes the lab's datastore unavailable and returns what
// brings it back: "stop" freezes it (SIGSTOP, then SIGCONT); "kill" kills
// it (SIGKILL) and starts the same command again on the same data, in the
// master's namespace. Either way it is undone when the test ends.
func (e *env) stopDatastore(mode string) (resume func()) {
	e.t.Helper()
	pid := e.datastorePID()
	switch mode {
	case "stop":
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			e.t.Fatal(err)
		}
		resumed := false
		resume = func() {
			if !resumed {
				resumed = true
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		e.t.Cleanup(resume)
		return resume
	case "kill":
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			e.t.Fatal(err)
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			e.t.Fatal(err)
		}
		waitUntil(e.t, "the datastore exits", 10*time.Second, func() error {
			if !exited(pid) {
				return fmt.Errorf("pid %d still there", pid)
			}
			return nil
		})
		return func() {
			e.t.Helper()
			cmd, err := e.lab.NodeCommand(context.Background(), lab.MasterNode, argv)
			if err != nil {
				e.t.Fatal(err)
			}
			p := startBG(e.root, cmd)
			waitUntil(e.t, "the datastore serves again", labWait, func() error {
				s, err := e.lab.Store()
				if err != nil {
					if strings.Contains(p.out.String(), "error") {
						return fmt.Errorf("%v; its output: %s", err, p.out.String())
					}
					return err
				}
				return s.Close()
			})
		}
	}
	e.t.Fatalf("stopDatastore: unknown mode %q", mode)
	return nil
}

// logsContain lists the lab's log files (agents, datastore, DNS, Mesos
// master, containers) that contain any of needles.
func (e *env) logsContain(needles ...[]byte) []string {
	e.t.Helper()
	var hits []string
	err := filepath.Walk(e.lab.Dir(), func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || !strings.HasSuffix(path, ".log") && filepath.Base(path) != "log" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, n := range needles {
			if len(n) > 0 && bytes.Contains(data, n) {
				hits = append(hits, path)
				break
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return hits
}

// exited reports whether process pid is gone (or a zombie, which it
// reaps when it is this process's child: labs are started by the test).
func exited(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	if f := strings.Fields(string(stat[i+1:])); i < 0 || len(f) == 0 || f[0] != "Z" && f[0] != "X" {
		return false
	}
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	return true
}
