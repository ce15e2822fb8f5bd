package agent

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/endpoint/endpointtest"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// TestRunLeavesNoGoroutines: on every way out of Run — stopped while
// waiting for the cache, a socket it cannot listen on, a normal stop —
// every goroutine it started has ended when it returns (issue 14, item
// 10). Before, the early returns left the cache, the loops and the HTTP
// server running.
func TestRunLeavesNoGoroutines(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		socket string
		stop   func(a *Agent, cancel context.CancelFunc) // when to stop Run
		// cacheNeverReady holds the cache's first listing of one kind
		// back until ctx ends: Run waits for the cache until then.
		cacheNeverReady bool
	}{
		{name: "stopped before the cache is ready", socket: filepath.Join(dir, "a.sock"), cacheNeverReady: true,
			stop: func(_ *Agent, cancel context.CancelFunc) { time.Sleep(200 * time.Millisecond); cancel() }},
		{name: "socket listen fails", socket: filepath.Join(notDir, "b.sock")},
		{name: "normal stop", socket: filepath.Join(dir, "c.sock"),
			stop: func(a *Agent, cancel context.CancelFunc) {
				for deadline := time.Now().Add(30 * time.Second); !a.ready.Load() && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
				cancel()
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := agentGoroutines()
			store := &slowListStore{Store: memstore.New()}
			if tc.cacheNeverReady {
				store.block = datastore.KeyPrefix + "profiles/"
			}
			if _, err := datastore.NewClient(store).Create(context.Background(), &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "p"}, Spec: api.IPPoolSpec{CIDR: "10.9.0.0/24", BlockSize: 28}}); err != nil {
				t.Fatal(err)
			}
			a, err := New(Config{Node: "n1", NodeIP: netip.MustParsePrefix("10.1.0.5/24"), MTU: 1500, Socket: tc.socket, HTTPListen: "127.0.0.1:0"},
				store, endpointtest.NewFake(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			a.enableForwarding = func() error { return nil }
			a.reaper.kernel = &fakeDeadKernel{gone: map[string]bool{}}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			if tc.stop != nil {
				tc.stop(a, cancel)
			}
			select {
			case err := <-done:
				// Checked at once: a goroutine still running now is one
				// Run did not wait for.
				if left := newSince(before, agentGoroutines()); len(left) > 0 {
					t.Fatalf("Run returned (%v) while %d of its goroutines still ran:\n%s", err, len(left), strings.Join(left, "\n\n"))
				}
			case <-time.After(20 * time.Second):
				var stacks []string
				for _, g := range agentGoroutines() {
					stacks = append(stacks, g)
				}
				t.Fatalf("Run did not return; the agent's goroutines:\n%s", strings.Join(stacks, "\n\n"))
			}
		})
	}
}

// agentGoroutines returns the stacks of live goroutines that are running
// Tabby agent or datastore code (or an HTTP server's Serve), keyed by
// goroutine header ("goroutine N"). The "created by" line does not count:
// a goroutine of Run's WaitGroup has left all Tabby code by the time it
// marks itself done, so at Run's return none of them may be listed.
func agentGoroutines() map[string]string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "TestRunLeavesNoGoroutines") || strings.Contains(g, "agentGoroutines") || strings.Contains(g, "slowListStore") {
			continue
		}
		frames := g
		if i := strings.Index(g, "\ncreated by "); i >= 0 {
			frames = g[:i]
		}
		if strings.Contains(frames, "tabby/internal/agent.") || strings.Contains(frames, "tabby/internal/datastore.") || strings.Contains(frames, "net/http.(*Server).Serve") {
			hdr, _, _ := strings.Cut(g, " [")
			out[hdr] = g
		}
	}
	return out
}

// newSince lists the goroutines in after that were not in before.
func newSince(before, after map[string]string) []string {
	var left []string
	for k, g := range after {
		if _, ok := before[k]; !ok {
			left = append(left, g)
		}
	}
	return left
}

// slowListStore blocks every List of the prefix block until its ctx ends,
// and closes each watch 100 ms after its ctx ends: the cache's reflectors
// are still running when a Run that does not wait for them returns.
type slowListStore struct {
	datastore.Store
	block string
}

func (s *slowListStore) List(ctx context.Context, prefix string) ([]*datastore.KV, int64, error) {
	if s.block != "" && prefix == s.block {
		<-ctx.Done()
		return nil, 0, ctx.Err()
	}
	return s.Store.List(ctx, prefix)
}

func (s *slowListStore) Watch(ctx context.Context, prefix string, from int64) <-chan datastore.Event {
	in := s.Store.Watch(ctx, prefix, from)
	out := make(chan datastore.Event)
	go func() { // listed by agentGoroutines as the test's own (slowListStore)
		defer close(out)
		for ev := range in {
			select {
			case out <- ev:
			case <-ctx.Done():
			}
		}
		time.Sleep(100 * time.Millisecond)
	}()
	return out
}
