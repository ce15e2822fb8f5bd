package router_test

// The "host" side of the privileged cluster tests: the test binary,
// re-executed inside a host's network namespace (ip netns exec), runs a
// Router there — its GoBGP sessions and kernel routes are that
// namespace's — against the test's etcd (a unix socket), feeding it the
// resources as the agent would. It serves the router's status on a unix
// socket and stops on SIGTERM (gracefully: routes stay, peers keep ours).

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/agent/routing/bgp"
	"github.com/tabbynet/tabby/internal/agent/routing/router"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// hostEnv names the environment variable carrying a hostConfig.
const hostEnv = "TABBY_ROUTER_TEST_HOST"

type hostConfig struct {
	Node        string        `json:"node"`
	NodeIP      string        `json:"nodeIP"`
	Etcd        []string      `json:"etcd"`
	Status      string        `json:"status"` // unix socket path
	DisableBGP  bool          `json:"disableBGP"`
	SyncTimeout time.Duration `json:"syncTimeout"`
}

func TestMain(m *testing.M) {
	if raw := os.Getenv(hostEnv); raw != "" {
		os.Exit(runHost(raw))
	}
	os.Exit(m.Run())
}

func runHost(raw string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var cfg hostConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		log.Error("bad host config", "error", err)
		return 2
	}
	log = log.With("host", cfg.Node)
	nodeIP, err := netip.ParsePrefix(cfg.NodeIP)
	if err != nil {
		log.Error("bad node IP", "error", err)
		return 2
	}
	store, err := etcd.New(etcd.Config{Endpoints: cfg.Etcd, DialTimeout: 10 * time.Second})
	if err != nil {
		log.Error("connect to etcd", "error", err)
		return 1
	}
	defer store.Close()
	r, err := router.New(router.Config{
		Node: cfg.Node, DisableBGP: cfg.DisableBGP, SyncTimeout: cfg.SyncTimeout,
		BGP: bgp.Options{ConnectRetry: time.Second, DeferralTime: time.Second},
	}, store, log)
	if err != nil {
		log.Error("router", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	ln, err := net.Listen("unix", cfg.Status)
	if err != nil {
		log.Error("status socket", "error", err)
		return 1
	}
	srv := &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		feed(ctx, store, cfg.Node, nodeIP, r, log)
	}()
	if err := r.Run(ctx); err != nil {
		log.Error("router stopped", "error", err)
		stop()
		wg.Wait()
		return 1
	}
	wg.Wait()
	return 0
}

// feed plays the agent: on every change of the routing resources it hands
// the router a fresh Input.
func feed(ctx context.Context, store datastore.Store, node string, nodeIP netip.Prefix, r *router.Router, log *slog.Logger) {
	c := datastore.NewClient(store)
	kinds := []string{"Node", "IPPool", "BGPConfiguration", "BGPPeer", "FelixConfiguration"}
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	for _, k := range kinds {
		go func() {
			for ctx.Err() == nil {
				for ev := range c.Watch(ctx, k, 0) {
					if ev.Err != nil {
						break
					}
					poke()
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	poke()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(5 * time.Second):
		}
		in, err := readInput(ctx, c, node, nodeIP)
		if err != nil {
			log.Warn("read resources", "error", err)
			continue
		}
		r.Update(in)
	}
}

func readInput(ctx context.Context, c *datastore.Client, node string, nodeIP netip.Prefix) (*routing.Input, error) {
	in := &routing.Input{Node: node, NodeIP: nodeIP}
	list := func(kind string, f func(api.Resource)) error {
		rs, _, err := c.List(ctx, kind, "")
		if err != nil {
			return fmt.Errorf("list %s: %w", kind, err)
		}
		for _, r := range rs {
			f(r)
		}
		return nil
	}
	err := list("Node", func(r api.Resource) { in.Nodes = append(in.Nodes, r.(*api.Node)) })
	if err == nil {
		err = list("IPPool", func(r api.Resource) { in.Pools = append(in.Pools, r.(*api.IPPool)) })
	}
	if err == nil {
		err = list("BGPPeer", func(r api.Resource) { in.Peers = append(in.Peers, r.(*api.BGPPeer)) })
	}
	if err == nil {
		err = list("BGPConfiguration", func(r api.Resource) {
			if r.GetObjectMeta().Name == "default" {
				in.BGPConfig = r.(*api.BGPConfiguration).Spec
			}
		})
	}
	if err == nil {
		err = list("FelixConfiguration", func(r api.Resource) {
			if r.GetObjectMeta().Name == "default" {
				in.Felix = r.(*api.FelixConfiguration).Spec
			}
		})
	}
	return in, err
}
