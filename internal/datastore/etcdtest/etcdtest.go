// Package etcdtest gives tests a real etcd: an embedded single-member
// server in t.TempDir() on a free loopback port, stopped in t.Cleanup.
//
//	store := etcdtest.New(t)          // a datastore.Store, closed in Cleanup
//	srv, cfg := etcdtest.NewServer(t) // the server (Stop/Start to restart) and how to reach it
//
// It is for tests only and imports testing; production code must not
// import it.
package etcdtest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/embedded"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// startTimeout bounds how long a test waits for its etcd to come up.
const startTimeout = 30 * time.Second

// Options adjust the server NewServerWith starts.
type Options struct {
	// Unix listens on a unix socket (in a short temporary directory)
	// instead of a loopback TCP port.
	Unix bool
	// Config is applied on top of the test defaults before the server
	// starts (DataDir, ListenClient, Logger are already set).
	Config func(*embedded.Config)
}

// New starts an embedded etcd for t and returns a Store connected to it.
// Both are closed in t.Cleanup.
func New(t testing.TB) datastore.Store {
	t.Helper()
	_, cfg := NewServer(t)
	s, err := etcd.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: connect: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// NewServer starts an embedded etcd for t on a free loopback port and
// returns it with the client config that reaches it. The server is stopped
// in t.Cleanup; a test may Stop and Start it again (it keeps its port and
// data) to simulate an outage.
func NewServer(t testing.TB) (*embedded.Server, etcd.Config) {
	t.Helper()
	return NewServerWith(t, Options{})
}

// NewServerWith is NewServer with options.
func NewServerWith(t testing.TB, o Options) (*embedded.Server, etcd.Config) {
	t.Helper()
	dir := t.TempDir()
	warn := slog.LevelWarn
	cfg := embedded.Config{
		Name:          "etcdtest",
		DataDir:       filepath.Join(dir, "etcd"),
		ListenClient:  "http://127.0.0.1:0",
		UnsafeNoFsync: true, // tests stop the server cleanly; fsync only costs time
		Logger:        Logger(t),
		EtcdLogLevel:  &warn,
	}
	if o.Unix {
		// Socket paths are limited to ~108 bytes; t.TempDir() can be longer.
		sockDir, err := os.MkdirTemp("", "etcdtest")
		if err != nil {
			t.Fatalf("etcdtest: socket dir: %v", err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
		cfg.ListenClient = "unix://" + filepath.Join(sockDir, "etcd.sock")
	}
	if o.Config != nil {
		o.Config(&cfg)
	}
	srv, err := embedded.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	return srv, etcd.Config{Endpoints: []string{srv.ClientURL()}, DialTimeout: 10 * time.Second}
}

// Restart stops srv and starts it again on the same address and data.
func Restart(t testing.TB, srv *embedded.Server) {
	t.Helper()
	if err := srv.Stop(); err != nil {
		t.Fatalf("etcdtest: stop: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("etcdtest: restart: %v", err)
	}
}

// Logger returns a logger that writes to t.Log (only shown when the test
// fails or runs with -v) and goes quiet once the test is over.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	lvl := slog.LevelDebug
	if _, ok := t.(*testing.B); ok {
		lvl = slog.LevelWarn // a benchmark prints its log even when it passes
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

var _ io.Writer = (*testWriter)(nil)

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
