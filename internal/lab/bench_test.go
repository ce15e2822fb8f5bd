package lab

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkPrivilegedLabUp measures `lab up` (not down) for 3 and 20 hosts.
func BenchmarkPrivilegedLabUp(b *testing.B) {
	requireRoot(b)
	bin := testBinaries(b)
	for _, hosts := range []int{3, 20} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			for range b.N {
				name := uniqueName("bu")
				b.StartTimer()
				l, err := Up(context.Background(), Config{Name: name, Nodes: hosts, Racks: max(1, hosts/5), BinDir: bin, Logger: testLogger(b)})
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				downLab(b, l)
			}
		})
	}
}

// BenchmarkPrivilegedLabMemory brings up 20 hosts, starts 200 containers
// (10 per host) and reports the memory of every lab process and the time
// the containers took (8 started at a time). Kernel memory (namespaces,
// links, routes, nftables) is not included.
func BenchmarkPrivilegedLabMemory(b *testing.B) {
	requireRoot(b)
	for range b.N {
		l := upLab(b, Config{Name: uniqueName("bm"), Nodes: 20, Racks: 4})
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		sem := make(chan struct{}, 8)
		for i := range 200 {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				_, err := l.Run(context.Background(), RunSpec{
					Name: fmt.Sprintf("c%d", i), Node: HostName(i%20 + 1),
					Labels: []KeyValue{{"app", fmt.Sprintf("a%d", i%10)}}, Command: []string{"sleep", "infinity"},
				})
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		runTime := time.Since(t0)
		time.Sleep(2 * time.Second) // let the agents settle
		u, err := l.Usage()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(u.PSS)/(1<<20), "pss-MiB")
		b.ReportMetric(float64(u.RSS)/(1<<20), "rss-MiB")
		b.ReportMetric(float64(u.Processes), "processes")
		b.ReportMetric(runTime.Seconds()/200*1000, "ms/container")
		for cmd, pss := range u.ByCommand {
			b.Logf("%-10s PSS %.1f MiB", cmd, float64(pss)/(1<<20))
		}
	}
}
