package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tabbynet/tabby/bench/internal/report"
)

// ErrSkip marks a benchmark that cannot run here (a missing tool or a
// feature that has not landed); wrap it with the reason.
var ErrSkip = errors.New("skipped")

// Skipf returns an ErrSkip with a reason.
func Skipf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrSkip, fmt.Sprintf(format, a...))
}

// Benchmark is one self-contained comparison: Tabby against its baselines.
type Benchmark struct {
	ID    string
	Title string
	// What, Baseline and Method go into the report as written.
	What, Baseline, Method string
	Systems                []report.System
	Metrics                []report.Metric
	// Needs are executables that must be on PATH.
	Needs []string
	// Budget bounds the benchmark in full and quick mode.
	Budget, QuickBudget time.Duration
	// Run measures; it records samples in rec and registers its cleanup in
	// env.J (closed when it returns).
	Run func(ctx context.Context, env *Env, rec *Recorder) error
	// Also are further report sections this Run fills (through
	// rec.Section(id)) because they share its setup; only their
	// descriptive fields are used.
	Also []Benchmark
}

// Env is what a benchmark gets to work with.
type Env struct {
	Log    *slog.Logger
	Quick  bool
	Rounds int
	// Bin holds tabby and tabby-cni; Self is the tabby-bench executable
	// (re-executed for helper servers and clients inside namespaces).
	Bin, Self string
	// J is the benchmark's own cleanup scope; Tmp its scratch directory.
	J   *Janitor
	Tmp string
	// RunID tells this run's namespaces from other runs' (4 hex chars).
	RunID string
	// Deadline is when the benchmark's budget runs out.
	Deadline time.Time
	seq      *atomic.Int64
}

// Name returns a unique name for this run: "tbb" + run ID + suffix + a
// counter, 15 characters at most for short suffixes (link names).
func (e *Env) Name(suffix string) string {
	return fmt.Sprintf("tbb%s%s%d", e.RunID, suffix, e.seq.Add(1))
}

// Sub returns an Env whose cleanup scope is a child of e's: closing it
// removes only what was made through it.
func (e *Env) Sub() *Env {
	c := *e
	c.J = e.J.Scope()
	return &c
}

// Pick returns full in full mode and quick in quick mode.
func Pick[T any](e *Env, full, quick T) T {
	if e.Quick {
		return quick
	}
	return full
}

// Order returns the systems in the order to run them in round r: as given
// in odd rounds, reversed in even ones, so that neither side always runs
// first (on a warming or cooling machine).
func Order(r int, systems ...string) []string {
	out := append([]string(nil), systems...)
	if r%2 == 0 {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// TimeLeft is the time until the benchmark's deadline.
func (e *Env) TimeLeft() time.Duration { return time.Until(e.Deadline) }

// Recorder collects one benchmark's samples.
type Recorder struct {
	mu       sync.Mutex
	b        *report.Bench
	sections map[string]*Recorder
}

// Section returns the recorder of the section declared in Also with id.
func (r *Recorder) Section(id string) *Recorder {
	if s, ok := r.sections[id]; ok {
		return s
	}
	panic(fmt.Sprintf("benchmark %s has no section %q", r.b.ID, id))
}

// Add records metric for system in round r, with the current load average.
func (r *Recorder) Add(metric, system string, round int, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b.Samples = append(r.b.Samples, report.Sample{Metric: metric, System: system, Round: round, Value: v, Load1: Load1()})
}

// Dist appends raw per-operation values to the (plot, system) distribution.
func (r *Recorder) Dist(plot, title, unit, system string, vals []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.b.Dists {
		d := &r.b.Dists[i]
		if d.Plot == plot && d.System == system {
			d.Values = append(d.Values, vals...)
			return
		}
	}
	r.b.Dists = append(r.b.Dists, report.Dist{Plot: plot, Title: title, Unit: unit, System: system, Values: append([]float64(nil), vals...)})
}

// Point appends (x, y) to a series.
func (r *Recorder) Point(s report.Series, x, y float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.b.Series {
		d := &r.b.Series[i]
		if d.Plot == s.Plot && d.System == s.System {
			d.X, d.Y = append(d.X, x), append(d.Y, y)
			return
		}
	}
	s.X, s.Y = []float64{x}, []float64{y}
	r.b.Series = append(r.b.Series, s)
}

// Note adds a line under the benchmark's table.
func (r *Recorder) Note(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b.Notes = append(r.b.Notes, fmt.Sprintf(format, a...))
}

// Load1 is the 1-minute load average (NaN if unreadable).
func Load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// Missing returns the executables in needs that are not on PATH.
func Missing(needs []string) []string {
	var out []string
	for _, n := range needs {
		if _, err := exec.LookPath(n); err != nil {
			out = append(out, n)
		}
	}
	return out
}
