package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing/router"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/testenv"
)

// status runs `tabby node status -o json` on node, as an operator would.
func (e *env) status(node string) (*router.Status, error) {
	out, err := e.on(node, filepath.Join(e.bin, lab.TabbyBinary), "node", "status", "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("tabby node status on %s: %v\n%s", node, err, out)
	}
	var st router.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("decode the status of %s: %v\n%s", node, err, out)
	}
	return &st, nil
}

// peersUp waits until node has n established BGP sessions and is in sync.
func (e *env) peersUp(node string, n int) time.Duration {
	e.t.Helper()
	return waitUntil(e.t, fmt.Sprintf("%d BGP sessions of %s established", n, node), labWait, func() error {
		st, err := e.status(node)
		if err != nil {
			return err
		}
		up := 0
		for _, p := range st.Peers {
			if p.State == "up" {
				up++
			}
		}
		if up != n || len(st.Peers) != n || !st.Synced {
			return fmt.Errorf("%d of %d up (%d peers), synced %v", up, n, len(st.Peers), st.Synced)
		}
		return nil
	})
}

// bfdUp waits until node's n BGP sessions all show BFD Up.
func (e *env) bfdUp(node string, n int) time.Duration {
	e.t.Helper()
	return waitUntil(e.t, fmt.Sprintf("BFD of the %d BGP sessions of %s up", n, node), labWait, func() error {
		st, err := e.status(node)
		if err != nil {
			return err
		}
		up := 0
		for _, p := range st.Peers {
			if p.BFD == "Up" {
				up++
			}
		}
		if up != n {
			return fmt.Errorf("BFD up on %d of %d sessions", up, n)
		}
		return nil
	})
}

// metric reads one sample (name with its labels, as /metrics prints it)
// from node's agent; -1 when it is not there.
func (e *env) metric(node, sample string) float64 {
	e.t.Helper()
	n := e.host(node)
	resp, err := lab.HTTPClientIn(n.Namespace).Get("http://" + netip.AddrPortFrom(n.IP.Addr(), lab.AgentHTTPPort).String() + "/metrics")
	if err != nil {
		e.t.Fatalf("metrics of %s: %v", node, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("metrics of %s: %v", node, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// block is the /26 a container's address comes from.
func block(c *lab.Container) string { return netip.PrefixFrom(c.IP(), 26).Masked().String() }

// hasRoute reports whether node has a route to prefix (any table).
func (e *env) hasRoute(node, prefix string) (bool, error) {
	out, err := e.on(node, "ip", "-4", "route", "show", "table", "all", "match", prefix)
	if err != nil {
		return false, fmt.Errorf("%v: %s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && (f[0] == prefix || len(f) > 1 && f[1] == prefix) {
			return true, nil
		}
	}
	return false, nil
}

// routeWatch samples, every 50 ms, whether node has a route to prefix,
// until stopped.
type routeWatch struct {
	samples, missing atomic.Int64
	firstMissing     atomic.Int64 // unix nanos
	stop             chan struct{}
	done             sync.WaitGroup
}

func (e *env) watchRoute(node, prefix string) *routeWatch {
	w := &routeWatch{stop: make(chan struct{})}
	ns := e.host(node).Namespace
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			out, err := exec.Command("ip", "-n", ns, "-4", "route", "show", "exact", prefix).Output()
			if err != nil {
				continue
			}
			w.samples.Add(1)
			if !strings.Contains(string(out), prefix) {
				if w.missing.Add(1) == 1 {
					w.firstMissing.Store(time.Now().UnixNano())
				}
			}
		}
	}()
	e.t.Cleanup(func() { w.end() })
	return w
}

func (w *routeWatch) end() (samples, missing int64) {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.done.Wait()
	return w.samples.Load(), w.missing.Load()
}

var (
	nftCounters = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	nftExpires  = regexp.MustCompile(` expires [0-9hms.]+`)
)

// kernelState is what an agent programs on its host: routes of every
// table, policy-routing rules and the nftables ruleset (counters and
// timeouts left out: traffic changes them).
func (e *env) kernelState(node string) string {
	e.t.Helper()
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "-4", "route", "show", "table", "all"},
		{"ip", "-6", "route", "show", "table", "all"},
		{"ip", "rule", "show"},
		{"nft", "list", "ruleset"},
	} {
		testenv.NeedTool(e.t, argv[0])
		out, err := e.on(node, argv...)
		if err != nil {
			e.t.Fatalf("%v on %s: %v\n%s", argv, node, err, out)
		}
		out = nftExpires.ReplaceAllString(nftCounters.ReplaceAllString(out, "counter"), "")
		fmt.Fprintf(&b, "## %s\n%s\n", strings.Join(argv, " "), out)
	}
	return b.String()
}
