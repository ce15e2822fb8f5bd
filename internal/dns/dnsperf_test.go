package dns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
	"github.com/tabbynet/tabby/internal/testenv"
)

// BenchmarkDNSPerf runs Debian's dnsperf against tabby dns and against
// dnsmasq serving the same 1,000 names (plus 10% unknown names), as
// shared/baselines/dns-qps.sh does for its floors. Needs dnsperf and
// dnsmasq-base; b.N is ignored (each server gets one 10 s run; set
// DNSPERF_SECONDS to change it).
func BenchmarkDNSPerf(b *testing.B) {
	testenv.NeedTools(b, "dnsperf", "dnsmasq")
	secs := 10
	if s, err := strconv.Atoi(os.Getenv("DNSPERF_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	const n = 1000
	dir := b.TempDir()
	var queries, hostRecords strings.Builder
	store := memstore.New()
	c := datastore.NewClient(store)
	mustCreate(b, c, testNode("agent-1", "10.0.1.11"))
	for i := range n {
		ip := fmt.Sprintf("10.96.%d.%d", i>>8, i&255)
		mustCreate(b, c, testEndpoint("default", fmt.Sprintf("svc-%d", i), "agent-1", fmt.Sprintf("svc-%d", i), ip))
		fmt.Fprintf(&queries, "svc-%d.default.mesos A\n", i)
		fmt.Fprintf(&hostRecords, "--host-record=svc-%d.default.mesos,%s\n", i, ip)
	}
	for i := range n / 10 {
		fmt.Fprintf(&queries, "nope-%d.default.mesos A\n", i)
	}
	qfile := filepath.Join(dir, "queries")
	if err := os.WriteFile(qfile, []byte(queries.String()), 0o644); err != nil {
		b.Fatal(err)
	}

	ts := startServer(b, store, func(cfg *Config) { cfg.Resolvers = nil })
	waitFor(b, "the records", func() bool {
		return len(query(b, ts.dns, "udp", fmt.Sprintf("svc-%d.default.mesos.", n-1), mdns.TypeA).Answer) == 1
	})
	tabby := runDNSPerf(b, ts.dns, qfile, secs)

	port := freeUDPPort(b)
	args := append([]string{"--keep-in-foreground", "--no-daemon", "--port=" + strconv.Itoa(port), "--listen-address=127.0.0.1",
		"--bind-interfaces", "--no-resolv", "--no-hosts", "--no-poll", "--cache-size=0", "--log-facility=/dev/null"},
		strings.Fields(hostRecords.String())...)
	cmd := exec.Command("dnsmasq", args...)
	if err := cmd.Start(); err != nil {
		b.Fatalf("start dnsmasq: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	dnsmasqAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitFor(b, "dnsmasq", func() bool {
		m, _, err := (&mdns.Client{Timeout: 200 * time.Millisecond}).Exchange(new(mdns.Msg).SetQuestion("svc-1.default.mesos.", mdns.TypeA), dnsmasqAddr)
		return err == nil && len(m.Answer) == 1
	})
	dnsmasq := runDNSPerf(b, dnsmasqAddr, qfile, secs)

	b.ReportMetric(tabby, "tabby-qps")
	b.ReportMetric(dnsmasq, "dnsmasq-qps")
	b.ReportMetric(tabby/dnsmasq, "tabby/dnsmasq")
}

var qpsLine = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)

func runDNSPerf(b *testing.B, addr, qfile string, secs int) float64 {
	b.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+30)*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dnsperf", "-s", host, "-p", port, "-d", qfile, "-l", strconv.Itoa(secs),
		"-c", "4", "-q", "200", "-t", "2").CombinedOutput()
	if err != nil {
		b.Fatalf("dnsperf: %v\n%s", err, out)
	}
	m := qpsLine.FindSubmatch(out)
	if m == nil {
		b.Fatalf("no QPS in dnsperf output:\n%s", out)
	}
	qps, _ := strconv.ParseFloat(string(m[1]), 64)
	b.Logf("%s: %.0f queries/s\n%s", addr, qps, out)
	return qps
}

func freeUDPPort(b *testing.B) int {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}
