// Package cnitest provides a fake tabby agent (a cni.Handler that hands
// out addresses from 10.65.0.0/24 and fd65::/64 and remembers attachments
// by IPAM handle) and serves any cni.Handler on a real unix socket, for
// tests of the plugin, the wire protocol and the agent's client side.
//
// It is for tests only; it imports testing and must not be imported by
// non-test code.
package cnitest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/internal/cni"
)

// Agent is a fake tabby agent.
type Agent struct {
	mu       sync.Mutex
	next     int
	attached map[string]*types100.Result // by IPAM handle
	requests []cni.Request
	notReady error
	fail     map[string]error
}

var _ cni.Handler = (*Agent)(nil)

// NewAgent returns an empty, ready fake agent.
func NewAgent() *Agent {
	return &Agent{attached: map[string]*types100.Result{}, fail: map[string]error{}}
}

// SetNotReady makes Status fail with err (nil: ready again).
func (a *Agent) SetNotReady(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.notReady = err
}

// FailNext makes the next request of command cmd fail with err.
func (a *Agent) FailNext(cmd string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail[cmd] = err
}

// Requests returns copies of the requests received, oldest first.
func (a *Agent) Requests() []cni.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// Last returns the last request of command cmd, or nil.
func (a *Agent) Last(cmd string) *cni.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.requests) - 1; i >= 0; i-- {
		if a.requests[i].Command == cmd {
			r := a.requests[i]
			return &r
		}
	}
	return nil
}

// Handles returns the IPAM handles of live attachments, sorted.
func (a *Agent) Handles() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for h := range a.attached {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

func (a *Agent) record(req *cni.Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, *req)
	if err := a.fail[req.Command]; err != nil {
		delete(a.fail, req.Command)
		return err
	}
	return nil
}

// Add hands out the next address (and an IPv6 one when ipam.assign_ipv6
// is true); a repeated ADD of the same handle returns the same result.
func (a *Agent) Add(_ context.Context, req *cni.Request) (*types100.Result, error) {
	if err := a.record(req); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	h := req.Identity.IPAMHandle
	if r, ok := a.attached[h]; ok {
		return r, nil
	}
	a.next++
	if a.next > 250 {
		return nil, cni.Errorf(types.ErrTryAgainLater, "fake agent: pool 10.65.0.0/24 is exhausted")
	}
	r := &types100.Result{CNIVersion: cni.WireVersion, DNS: req.NetConf.DNS}
	var ifIndex *int
	if req.Mode == cni.ModeAttach {
		sum := sha256.Sum256([]byte(req.ContainerID + "/" + req.IfName))
		r.Interfaces = []*types100.Interface{
			{Name: "tby" + hex.EncodeToString(sum[:])[:11], Mac: "ee:ee:ee:ee:ee:ee"},
			{Name: req.IfName, Mac: fmt.Sprintf("0a:58:0a:41:00:%02x", a.next), Sandbox: req.NetNS},
		}
		ifIndex = types100.Int(1)
	}
	gw := net.IPv4(169, 254, 1, 1)
	if req.NetConf.IPAM.WantIPv4() {
		r.IPs = append(r.IPs, &types100.IPConfig{
			Interface: ifIndex,
			Address:   net.IPNet{IP: net.IPv4(10, 65, 0, byte(a.next)).To4(), Mask: net.CIDRMask(32, 32)},
			Gateway:   gw,
		})
		r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw})
	}
	if req.NetConf.IPAM.WantIPv6() {
		ip6 := net.ParseIP(fmt.Sprintf("fd65::%x", a.next))
		r.IPs = append(r.IPs, &types100.IPConfig{Interface: ifIndex, Address: net.IPNet{IP: ip6, Mask: net.CIDRMask(128, 128)}})
		r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}})
	}
	a.attached[h] = r
	return r, nil
}

// Del forgets the attachment; a missing one is fine.
func (a *Agent) Del(_ context.Context, req *cni.Request) error {
	if err := a.record(req); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.attached, req.Identity.IPAMHandle)
	return nil
}

// Check verifies the attachment exists and that prevResult holds its
// addresses on its interface.
func (a *Agent) Check(_ context.Context, req *cni.Request) error {
	if err := a.record(req); err != nil {
		return err
	}
	a.mu.Lock()
	have, ok := a.attached[req.Identity.IPAMHandle]
	a.mu.Unlock()
	if !ok {
		return cni.Errorf(types.ErrUnknownContainer, "fake agent: no attachment %s", req.Identity.IPAMHandle)
	}
	prev, err := req.NetConf.ParsePrevResult()
	if err != nil {
		return err
	}
	if prev == nil {
		return cni.Errorf(types.ErrInvalidNetworkConfig, "fake agent: CHECK without prevResult")
	}
	// prevResult is the whole chain's result: it must hold each of the
	// attachment's addresses, and an interface index it gives must name
	// the attachment's interface.
	for _, ip := range have.IPs {
		i := slices.IndexFunc(prev.IPs, func(p *types100.IPConfig) bool { return p.Address.String() == ip.Address.String() })
		if i < 0 {
			return cni.Errorf(types.ErrInternal, "fake agent: prevResult lacks the attachment's address %s", ip.Address.String())
		}
		got := prev.IPs[i].Interface
		if ip.Interface == nil || got == nil {
			continue // a prevResult may carry addresses only
		}
		want := have.Interfaces[*ip.Interface].Name
		if *got < 0 || *got >= len(prev.Interfaces) || prev.Interfaces[*got].Name != want {
			return cni.Errorf(types.ErrInternal, "fake agent: prevResult puts %s on interface index %v, not on %s", ip.Address.String(), got, want)
		}
	}
	return nil
}

// GC forgets the network's attachments that are not in ValidAttachments.
func (a *Agent) GC(_ context.Context, req *cni.Request) error {
	if err := a.record(req); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, v := range req.ValidAttachments {
		keep[cni.HandleID(req.NetConf.Name, v.ContainerID, v.IfName)] = true
	}
	prefix := req.NetConf.Name + "."
	a.mu.Lock()
	defer a.mu.Unlock()
	for h := range a.attached {
		if len(h) > len(prefix) && h[:len(prefix)] == prefix && !keep[h] {
			delete(a.attached, h)
		}
	}
	return nil
}

// Status fails with the SetNotReady error.
func (a *Agent) Status(_ context.Context, req *cni.Request) error {
	if err := a.record(req); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.notReady
}

// Serve serves h on a new unix socket until the test ends and returns the
// socket's path (short enough for sun_path).
func Serve(tb testing.TB, h cni.Handler) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "tby")
	if err != nil {
		tb.Fatalf("make socket dir: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "agent.sock")
	l, err := cni.Listen(path)
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &http.Server{Handler: cni.NewHTTPHandler(h, log), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("serve fake agent: %v", err)
		}
	}()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return path
}
