package dns

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// syncBuffer is a log sink tests can read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a running server on loopback with its log.
type testServer struct {
	*Server
	log  *syncBuffer
	dns  string // "127.0.0.1:port"
	http string // "http://127.0.0.1:port"
}

// startServer runs a server on 127.0.0.1 with free ports until the test
// ends, and waits until it is ready (every source made its first attempt).
func startServer(t testing.TB, store datastore.Store, edit func(*Config)) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listener, cfg.Port = "127.0.0.1", 0
	cfg.HTTPListener, cfg.HTTPPort = "127.0.0.1", 0
	cfg.RefreshSeconds = 0.05
	cfg.StateTimeoutSeconds = 2
	cfg.Timeout = 2
	if edit != nil {
		edit(&cfg)
	}
	logs := &syncBuffer{}
	var w io.Writer = logs
	if testing.Verbose() {
		w = io.MultiWriter(logs, os.Stderr)
	}
	srv, err := New(cfg, Options{Store: store, Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "dns"), Version: "test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
	})
	ts := &testServer{Server: srv, log: logs}
	if a := srv.DNSAddr(); a != nil {
		ts.dns = a.String()
	}
	if a := srv.HTTPAddr(); a != nil {
		ts.http = "http://" + a.String()
	}
	waitFor(t, "the server to be ready", func() bool { return srv.snap.Load().ready })
	return ts
}

// waitFor polls cond with a generous deadline (no timing assertions).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// query asks addr over net ("udp" or "tcp").
func query(t testing.TB, addr, network, name string, qtype uint16, opts ...func(*mdns.Msg)) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg).SetQuestion(name, qtype)
	for _, o := range opts {
		o(m)
	}
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, mdns.TypeToString[qtype], network, err)
	}
	return resp
}

// rrStrings renders records without TTL and owner, sorted: "A 10.0.0.1",
// "SRV 0 1 80 x.mesos.", "SOA ns1.mesos. root.ns1.mesos.".
func rrStrings(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == mdns.TypeOPT {
			continue
		}
		f := strings.Fields(rr.String())
		if rr.Header().Rrtype == mdns.TypeSOA {
			f = f[:6] // without the serial and timers
		}
		out = append(out, strings.Join(f[3:], " "))
	}
	slices.Sort(out)
	return out
}

// fakeMaster serves /master/state from a fixture, or failures on demand.
type fakeMaster struct {
	*httptest.Server
	mode  atomic.Value // "ok", "malformed", "wrongtype", "500", "noleader"
	state atomic.Value // []byte served in "ok" mode
	hits  atomic.Int64
}

func newFakeMaster(t testing.TB, state []byte) *fakeMaster {
	t.Helper()
	fm := &fakeMaster{}
	fm.mode.Store("ok")
	fm.state.Store(state)
	fm.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fm.hits.Add(1)
		if r.URL.Path != "/master/state" {
			http.NotFound(w, r)
			return
		}
		switch fm.mode.Load().(string) {
		case "ok":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(fm.state.Load().([]byte))
		case "malformed":
			_, _ = io.WriteString(w, `{"leader": "master@10.0.4.10:5050", "slaves": [`)
		case "wrongtype":
			_, _ = io.WriteString(w, `{"leader": "master@10.0.4.10:5050", "slaves": {"id": 1}}`)
		case "noleader":
			_, _ = io.WriteString(w, `{"slaves": []}`)
		default:
			http.Error(w, "no", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(fm.Close)
	return fm
}

func readFixture(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("mesos/testdata/state.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testNode and testEndpoint make valid resources.
func testNode(name, ip string) *api.Node {
	return &api.Node{ObjectMeta: api.ObjectMeta{Name: name}, Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: ip + "/24"}}}
}

func testEndpoint(ns, name, node, workload string, ips ...string) *api.WorkloadEndpoint {
	ep := &api.WorkloadEndpoint{
		ObjectMeta: api.ObjectMeta{Name: name, Namespace: ns},
		Spec: api.WorkloadEndpointSpec{
			Orchestrator: "cni", Node: node, Workload: workload, Endpoint: "eth0",
			ContainerID: "c" + strings.ReplaceAll(name, ".", "-"), Profiles: []string{"calico"},
		},
	}
	for _, ip := range ips {
		if strings.Contains(ip, ":") {
			ep.Spec.IPNetworks = append(ep.Spec.IPNetworks, ip+"/128")
		} else {
			ep.Spec.IPNetworks = append(ep.Spec.IPNetworks, ip+"/32")
		}
	}
	return ep
}

func mustCreate(t testing.TB, c *datastore.Client, r api.Resource) {
	t.Helper()
	if _, err := c.Create(context.Background(), r); err != nil {
		t.Fatalf("create %s: %v", r.GetObjectMeta().Name, err)
	}
}

// metric returns the value of a sample line of /metrics, or -1.
func metric(t testing.TB, base, sample string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}
