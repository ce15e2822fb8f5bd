package agent_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

// debianPlugins is where Debian's containernetworking-plugins puts ptp and host-local.
const debianPlugins = "/usr/lib/cni"

// BenchmarkPrivilegedCNIAddDel measures ADD and DEL through libcni for
// Tabby and, in the same run, for ptp + host-local (the closest peer).
// Both run from inside a private "host" namespace, so ptp's host side and
// routes never touch the root namespace. Reported: p50/p99 of each.
//
//	go test -run XXX -bench PrivilegedCNIAddDel -benchtime 100x ./internal/agent/
func BenchmarkPrivilegedCNIAddDel(b *testing.B) {
	testenv.NeedRoot(b)
	c := agenttest.NewCluster(b, "10.90.0.0/16")
	h := c.StartHost("bench1", "10.200.0.1/24", "--disable-routing")
	_, cpath := c.NewContainerNS()
	ctx := context.Background()

	b.Run("tabby", func(b *testing.B) {
		list := h.ConfList("net1", "1.1.0")
		cni := c.CNI()
		runAddDel(b, h.NSPath, func(i int) (time.Duration, time.Duration, error) {
			rt := agenttest.RuntimeConf(fmt.Sprintf("bench%06d", i), cpath, "eth0")
			return timeAddDel(func() error { _, err := cni.AddNetworkList(ctx, list, rt); return err },
				func() error { return cni.DelNetworkList(ctx, list, rt) })
		})
	})

	b.Run("ptp+host-local", func(b *testing.B) {
		testenv.NeedCNIPlugins(b, "ptp", "host-local")
		state := b.TempDir()
		conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"ptpbench","plugins":[{"type":"ptp","ipMasq":false,"ipam":{"type":"host-local","subnet":"10.98.0.0/16","dataDir":%q}}]}`, state)
		list, err := libcni.ConfListFromBytes([]byte(conf))
		if err != nil {
			b.Fatal(err)
		}
		cni := libcni.NewCNIConfigWithCacheDir([]string{debianPlugins}, b.TempDir(), nil)
		runAddDel(b, h.NSPath, func(i int) (time.Duration, time.Duration, error) {
			rt := agenttest.RuntimeConf(fmt.Sprintf("bench%06d", i), cpath, "eth0")
			return timeAddDel(func() error { _, err := cni.AddNetworkList(ctx, list, rt); return err },
				func() error { return cni.DelNetworkList(ctx, list, rt) })
		})
	})
}

func timeAddDel(add, del func() error) (time.Duration, time.Duration, error) {
	t0 := time.Now()
	if err := add(); err != nil {
		return 0, 0, fmt.Errorf("ADD: %w", err)
	}
	t1 := time.Now()
	if err := del(); err != nil {
		return 0, 0, fmt.Errorf("DEL: %w", err)
	}
	return t1.Sub(t0), time.Since(t1), nil
}

// runAddDel runs one ADD+DEL per iteration from inside hostNS (the plugins
// are forked from the locked thread, so they start in that namespace).
func runAddDel(b *testing.B, hostNS string, cycle func(i int) (time.Duration, time.Duration, error)) {
	var adds, dels []time.Duration
	// One warm-up cycle, as the baseline script does.
	if err := netns.Do(hostNS, func() error { _, _, err := cycle(-1); return err }); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := netns.Do(hostNS, func() error {
			a, d, err := cycle(i)
			adds, dels = append(adds, a), append(dels, d)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(pct(adds, 50)), "add-p50-ms")
	b.ReportMetric(ms(pct(adds, 99)), "add-p99-ms")
	b.ReportMetric(ms(pct(dels, 50)), "del-p50-ms")
	b.ReportMetric(ms(pct(dels, 99)), "del-p99-ms")
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
