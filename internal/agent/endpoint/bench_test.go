package endpoint

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
)

// BenchmarkPrivilegedAddDel wires and unwires one container interface, from inside a test host namespace as the agent would, and
// reports the median and 90th percentile of Add, Del and both.
func BenchmarkPrivilegedAddDel(b *testing.B) {
	RequireRoot(b)
	for _, bc := range []struct {
		name  string
		addrs []string
	}{
		{"ipv4", []string{"10.65.0.1/32"}},
		{"dual-stack", []string{"10.65.0.1/32", "fd00:65::1/128"}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchAddDel(b, pfxs(bc.addrs...)) })
	}
}

func benchAddDel(b *testing.B, addrs []netip.Prefix) {
	ctx := context.Background()
	host, cont := NewTestHost(b), NewTestNetNS(b, "tbyt-bench-")
	w := New(nil)
	cfg := Config{ContainerID: "bench", IfName: "eth0", NetNS: cont, Addrs: addrs}
	adds := make([]time.Duration, 0, b.N)
	dels := make([]time.Duration, 0, b.N)
	both := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	err := netns.Do(host, func() error {
		for range b.N {
			t0 := time.Now()
			if _, err := w.Add(ctx, cfg); err != nil {
				return err
			}
			t1 := time.Now()
			if err := w.Del(ctx, cfg.ContainerID, cfg.IfName, cfg.NetNS); err != nil {
				return err
			}
			t2 := time.Now()
			adds, dels, both = append(adds, t1.Sub(t0)), append(dels, t2.Sub(t1)), append(both, t2.Sub(t0))
		}
		return nil
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	pct := func(ds []time.Duration, p int) float64 {
		slices.Sort(ds)
		return float64(ds[(len(ds)-1)*p/100].Microseconds()) / 1000
	}
	b.ReportMetric(pct(adds, 50), "add-p50-ms")
	b.ReportMetric(pct(dels, 50), "del-p50-ms")
	b.ReportMetric(pct(both, 50), "adddel-p50-ms")
	b.ReportMetric(pct(both, 90), "adddel-p90-ms")
}
