package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tabbynet/tabby/bench/internal/report"
)

// Options configure a run.
type Options struct {
	Quick  bool
	Rounds int // 0: 5 (full) or 2 (quick)
	// Only and Skip select benchmarks by ID (empty Only: all).
	Only, Skip []string
	Bin, Self  string
	// Out is the results root; the report goes to Out/<date>/ (Out/<date>-N
	// when that exists).
	Out     string
	Command string
	Tabby   string // version string for the report
	Log     *slog.Logger
	// logDir receives the process logs of a failed benchmark.
	logDir string
}

// RunAll runs the selected benchmarks one after another (never in parallel:
// they would measure each other) and writes the report. It returns the
// report directory.
func RunAll(ctx context.Context, opts Options, all []Benchmark, root *Janitor) (string, *report.Report, error) {
	if opts.Rounds <= 0 {
		opts.Rounds = 5
		if opts.Quick {
			opts.Rounds = 2
		}
	}
	mode := "full"
	if opts.Quick {
		mode = "quick"
	}
	rep := &report.Report{Started: time.Now(), Mode: mode, Rounds: opts.Rounds, Command: opts.Command, Machine: MachineInfo(opts.Tabby)}
	dir, err := reportDir(opts.Out, rep.Started)
	if err != nil {
		return "", rep, err
	}
	opts.logDir = filepath.Join(dir, "logs")
	runID := fmt.Sprintf("%04x", os.Getpid()&0xffff)
	seq := new(atomic.Int64)
	for _, b := range all {
		if !selected(b.ID, opts.Only, opts.Skip) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		rep.Benches = append(rep.Benches, runOne(ctx, opts, b, root, runID, seq)...)
	}
	rep.Finished = time.Now()
	rep.Machine.LoadEnd = loadavg()
	if err := rep.DrawPlots(context.WithoutCancel(ctx), dir); err != nil {
		opts.Log.Warn("plots", "err", err)
	}
	if err := rep.Write(dir); err != nil {
		return dir, rep, err
	}
	return dir, rep, ctx.Err()
}

func selected(id string, only, skip []string) bool {
	for _, s := range skip {
		if s == id {
			return false
		}
	}
	if len(only) == 0 {
		return true
	}
	for _, s := range only {
		if s == id {
			return true
		}
	}
	return false
}

func newBench(b Benchmark) *report.Bench {
	return &report.Bench{ID: b.ID, Title: b.Title, What: b.What, Baseline: b.Baseline, Method: b.Method,
		Systems: b.Systems, Metrics: b.Metrics, Status: report.StatusOK}
}

// runOne runs b and returns its report section and those of b.Also, which
// share its status.
func runOne(ctx context.Context, opts Options, b Benchmark, root *Janitor, runID string, seq *atomic.Int64) []*report.Bench {
	rb := newBench(b)
	out := []*report.Bench{rb}
	rec := &Recorder{b: rb, sections: map[string]*Recorder{}}
	for _, a := range b.Also {
		ab := newBench(a)
		out = append(out, ab)
		rec.sections[a.ID] = &Recorder{b: ab}
	}
	start := time.Now()
	defer func() {
		for _, ab := range out {
			ab.Seconds = time.Since(start).Seconds()
			if ab != rb {
				ab.Status, ab.Reason = rb.Status, rb.Reason
			}
		}
	}()
	runBench(ctx, opts, b, root, runID, seq, rb, rec)
	return out
}

func runBench(ctx context.Context, opts Options, b Benchmark, root *Janitor, runID string, seq *atomic.Int64, rb *report.Bench, rec *Recorder) {
	log := opts.Log.With("bench", b.ID)
	start := time.Now()
	if m := Missing(b.Needs); len(m) > 0 {
		rb.Status, rb.Reason = report.StatusSkipped, "missing "+strings.Join(m, ", ")+" (see docs/performance.md for the Debian packages)"
		log.Warn("skipped", "reason", rb.Reason)
		return
	}
	budget := b.Budget
	if opts.Quick {
		budget = b.QuickBudget
	}
	if budget <= 0 {
		budget = 5 * time.Minute
	}
	bctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	j := root.Scope()
	defer j.Close()
	tmp, err := j.TempDir("tabby-bench-" + b.ID + "-")
	if err != nil {
		rb.Status, rb.Reason = report.StatusFailed, err.Error()
		return
	}
	dl, _ := bctx.Deadline()
	env := &Env{Log: log, Quick: opts.Quick, Rounds: opts.Rounds, Bin: opts.Bin, Self: opts.Self, J: j, Tmp: tmp, RunID: runID, Deadline: dl, seq: seq}
	log.Info("start", "budget", budget, "load1", Load1())
	err = func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return b.Run(bctx, env, rec)
	}()
	switch {
	case err == nil:
		log.Info("done", "seconds", time.Since(start).Round(time.Second), "samples", len(rb.Samples))
	case errors.Is(err, ErrSkip):
		rb.Status, rb.Reason = report.StatusSkipped, strings.TrimPrefix(err.Error(), ErrSkip.Error()+": ")
		log.Warn("skipped", "reason", rb.Reason)
	default:
		if errors.Is(bctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("over its %s budget: %w", budget, err)
		}
		rb.Status, rb.Reason = report.StatusFailed, err.Error()
		log.Error("failed", "err", err)
		if kept := keepLogs(tmp, filepath.Join(opts.logDir, b.ID)); kept != "" {
			rec.Note("Process logs of the failed run: %s", kept)
			log.Info("logs kept", "dir", kept)
		}
	}
}

// keepLogs copies the *.log files under tmp (daemon logs) to dst before
// the benchmark's temp directory is removed; it returns dst, or "" when
// there was nothing to keep.
func keepLogs(tmp, dst string) string {
	var files []string
	_ = filepath.WalkDir(tmp, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".log") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		return ""
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		rel, _ := filepath.Rel(tmp, f)
		out := filepath.Join(dst, strings.ReplaceAll(rel, string(filepath.Separator), "-"))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return ""
		}
		_ = os.WriteFile(out, b, 0o644)
	}
	return dst
}

func reportDir(out string, t time.Time) (string, error) {
	base := filepath.Join(out, t.Format("2006-01-02"))
	dir := base
	for i := 2; ; i++ {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			break
		}
		dir = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create report directory: %w", err)
	}
	return dir, nil
}

// MachineInfo describes this machine and the tools the baselines use.
func MachineInfo(tabby string) report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Tabby: tabby, LoadStart: loadavg(), Tools: map[string]string{}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && k == "MemTotal" {
				var kb float64
				fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
				m.MemTotal = fmt.Sprintf("%.1f GiB", kb/1024/1024)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	for _, pkg := range []string{"iperf3", "dnsperf", "dnsmasq-base", "nftables", "iptables", "containernetworking-plugins", "gnuplot-nox", "iproute2"} {
		if v := debVersion(pkg); v != "" {
			m.Tools[pkg] = v
		}
	}
	return m
}

// debVersion is the installed version of a Debian package, or "".
func debVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
