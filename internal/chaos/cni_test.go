package chaos

import (
	"context"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
)

// attempt is one CNI ADD the test sends itself through the lab's plugin
// and a host's configuration (docs/lab.md: STATE/cni/bin, STATE/hN/net.d),
// so that its duration and its error are exactly what a runtime sees.
type attempt struct {
	Took time.Duration
	Err  error
	// IP is the address the ADD returned.
	IP string
}

// cniAttempt sends one ADD for a fresh namespace on node, giving up after
// timeout; when the test ends it sends the DEL (an ADD may take effect
// even when it failed) and removes the namespace.
func (e *env) cniAttempt(node string, timeout time.Duration) attempt {
	e.t.Helper()
	return e.cniAttemptArgs(node, timeout, nil)
}

// cniAttemptArgs is cniAttempt with CNI_ARGS (say IP=ADDR, an address
// asked for).
func (e *env) cniAttemptArgs(node string, timeout time.Duration, args [][2]string) attempt {
	e.t.Helper()
	name := "tcx" + labName("") + labName("")
	nsPath, err := netns.Create(name)
	if err != nil {
		e.t.Fatal(err)
	}
	list, err := libcni.LoadConfList(filepath.Join(e.lab.Dir(), node, "net.d"), lab.DefaultNetwork)
	if err != nil {
		_ = netns.Delete(name)
		e.t.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{filepath.Join(e.lab.Dir(), "cni", "bin")}, e.t.TempDir(), nil)
	rt := &libcni.RuntimeConf{ContainerID: name, NetNS: nsPath, IfName: lab.ContainerIfName, Args: args}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			e.t.Logf("DEL of the test's attachment %s: %v", rt.ContainerID, err)
		}
		if err := netns.Delete(name); err != nil {
			e.t.Logf("delete namespace %s: %v", name, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	res, err := cni.AddNetworkList(ctx, list, rt)
	a := attempt{Took: time.Since(t0), Err: err}
	if err == nil {
		if r, cerr := types100.NewResultFromResult(res); cerr == nil && len(r.IPs) > 0 {
			a.IP = r.IPs[0].Address.IP.String()
		}
	}
	return a
}

// hangBound is how long the test lets one ADD run before calling it a hang
// (the plugin's own timeout is 60 s).
const hangBound = 2 * time.Minute

// failFast is the bound on an ADD the agent cannot serve: it must
// fail with CNI code 11 within it rather than hang.
const failFast = 5 * time.Second
