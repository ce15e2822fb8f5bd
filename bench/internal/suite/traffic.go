package suite

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/bench/internal/harness"
)

// iperfServer starts iperf3 -s bound to ip inside ns.
func iperfServer(env *harness.Env, ns, ip string) (*harness.Proc, error) {
	p, err := env.J.StartProc("iperf3 server "+ns, ns, []string{"iperf3", "-s", "-B", ip}, filepath.Join(env.Tmp, "iperf3-"+ns+".log"))
	if err != nil {
		return nil, err
	}
	return p, waitTCP(ns, net.JoinHostPort(ip, "5201"), 10*time.Second)
}

// waitTCP waits until something listens on addr inside ns.
func waitTCP(ns, addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		out, _ := harness.Run(context.Background(), harness.InNS(ns, "ss", "-Hltn", "src", addr)...)
		if len(strings.TrimSpace(string(out))) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s in %s after %s", addr, ns, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// iperf runs an iperf3 client from ns to ip and returns Gbit/s received.
func iperf(ctx context.Context, ns, ip string, secs, streams int) (float64, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Duration(secs+30)*time.Second)
	defer cancel()
	out, err := harness.Run(cctx, harness.InNS(ns, "iperf3", "-c", ip, "-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams), "-J")...)
	if err != nil {
		return 0, fmt.Errorf("iperf3: %w", err)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

// crrServer starts the connection-rate echo server (this binary) in ns.
func crrServer(env *harness.Env, ns, addr string) (*harness.Proc, error) {
	p, err := env.J.StartProc("crr server "+ns, ns, []string{env.Self, "helper", "crr-server", "-addr", addr}, filepath.Join(env.Tmp, "crr-"+ns+".log"))
	if err != nil {
		return nil, err
	}
	return p, waitTCP(ns, addr, 10*time.Second)
}

// crrResult is one connection-rate run.
type crrResult struct {
	PerSec float64 `json:"perSec"`
	P50    float64 `json:"p50"` // microseconds
	P99    float64 `json:"p99"`
	Errors int     `json:"errors"`
}

// crr runs the connection-rate client from ns against addr.
func crr(ctx context.Context, env *harness.Env, ns, addr string, d time.Duration, conc int) (crrResult, error) {
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := harness.Run(cctx, harness.InNS(ns, env.Self, "helper", "crr-client", "-addr", addr, "-t", d.String(), "-c", strconv.Itoa(conc))...)
	if err != nil {
		return crrResult{}, err
	}
	var r crrResult
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("crr output %q: %w", out, err)
	}
	return r, nil
}

// crrServe accepts connections and echoes one byte on each: the server
// half of netperf's TCP_CRR.
func crrServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("crr-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7000", "listen address")
	if fs.Parse(args) != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return 0
			}
			continue
		}
		go func() {
			defer c.Close()
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err == nil {
				_, _ = c.Write(b)
			}
		}()
	}
}

// crrClient runs conc loops of connect → 1 byte → 1 byte → close (RST, so
// no TIME_WAIT piles up) for a duration and prints JSON: connections per
// second and p50/p99 transaction time in microseconds.
func crrClient(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crr-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7000", "server address")
	dur := fs.Duration("t", 5*time.Second, "run time")
	conc := fs.Int("c", 4, "concurrent loops")
	if fs.Parse(args) != nil {
		return 2
	}
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<14)
			b := []byte{'x'}
			nerr := 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				c, err := net.DialTimeout("tcp", *addr, 2*time.Second)
				if err != nil {
					nerr++
					continue
				}
				_, err = c.Write(b)
				if err == nil {
					_, err = io.ReadFull(c, b)
				}
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
				if err != nil {
					nerr++
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += nerr
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		fmt.Fprintf(stderr, "no successful transactions (%d errors)\n", errs)
		return 1
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(p*float64(len(lat))+0.999999) - 1
		return float64(lat[max(0, min(len(lat)-1, i))].Microseconds())
	}
	b, _ := json.Marshal(crrResult{PerSec: float64(len(lat)) / dur.Seconds(), P50: pct(0.5), P99: pct(0.99), Errors: errs})
	fmt.Fprintln(stdout, string(b))
	return 0
}
