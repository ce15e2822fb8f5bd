// Package report holds the results of a `make bench` run and writes them
// out: results.json (every raw sample), report.md (medians over rounds with
// min and max, next to the baselines measured in the same run, and the
// paired ratio Tabby ÷ baseline) and PNG plots drawn by gnuplot, when it is
// installed, for latency distributions and cost against scale.
//
// Rendering is pure (Markdown and gnuplot scripts are built from the
// Report); only Write and Plot touch the file system and exec gnuplot. It
// imports bench/internal/stats and the standard library only; it must not
// import the harness or any Tabby runtime package.
package report

import (
	"math"
	"slices"
	"time"

	"github.com/tabbynet/tabby/bench/internal/stats"
)

// Report is one benchmark run.
type Report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Mode is "full" or "quick"; Rounds the rounds each benchmark ran.
	Mode    string   `json:"mode"`
	Rounds  int      `json:"rounds"`
	Command string   `json:"command"`
	Machine Machine  `json:"machine"`
	Benches []*Bench `json:"benches"`
	// PlotNote says why plots are missing, if they are.
	PlotNote string `json:"plotNote,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int               `json:"cpus"`
	CPUModel  string            `json:"cpuModel"`
	MemTotal  string            `json:"memTotal"`
	Kernel    string            `json:"kernel"`
	OS        string            `json:"os"`
	GoVersion string            `json:"goVersion"`
	Tabby     string            `json:"tabby"`
	LoadStart string            `json:"loadStart"`
	LoadEnd   string            `json:"loadEnd"`
	Tools     map[string]string `json:"tools"`
}

// Status of a benchmark.
const (
	StatusOK      = "ok"
	StatusSkipped = "skipped"
	StatusFailed  = "failed"
)

// Bench is one benchmark: its description, the systems it compares, the
// metrics it reports and every sample it took.
type Bench struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// What, Baseline and Method are Markdown paragraphs for the report.
	What     string `json:"what"`
	Baseline string `json:"baseline"`
	Method   string `json:"method"`

	Systems []System `json:"systems"`
	Metrics []Metric `json:"metrics"`
	Samples []Sample `json:"samples"`
	Dists   []Dist   `json:"dists,omitempty"`
	Series  []Series `json:"series,omitempty"`
	Notes   []string `json:"notes,omitempty"`

	Status  string  `json:"status"`
	Reason  string  `json:"reason,omitempty"`
	Seconds float64 `json:"seconds"`
	// Plots are PNG files relative to the report directory, with titles.
	Plots []Plot `json:"plots,omitempty"`
}

// System is Tabby or one of the baselines it is compared with.
type System struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	// Baseline marks the systems Tabby is divided by.
	Baseline bool `json:"baseline,omitempty"`
}

// Tabby is the key of Tabby's own system in every benchmark.
const Tabby = "tabby"

// Metric is one figure per round and system.
type Metric struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	Unit  string `json:"unit"`
	// LowerIsBetter: latencies, memory; throughputs are higher-is-better.
	LowerIsBetter bool `json:"lowerIsBetter,omitempty"`
}

// Sample is one metric of one system in one round, with the 1-minute load
// average when it was taken (the machine is shared).
type Sample struct {
	Metric string  `json:"metric"`
	System string  `json:"system"`
	Round  int     `json:"round"`
	Value  float64 `json:"value"`
	Load1  float64 `json:"load1"`
}

// Dist is raw per-operation values (pooled over rounds) for a
// distribution plot; all Dists with the same Plot share one figure.
type Dist struct {
	Plot   string    `json:"plot"`
	Title  string    `json:"title"`
	Unit   string    `json:"unit"`
	System string    `json:"system"`
	Values []float64 `json:"values"`
}

// Series is a cost measured at several scales (x); all Series with the same
// Plot share one figure, one line per System.
type Series struct {
	Plot   string    `json:"plot"`
	Title  string    `json:"title"`
	XLabel string    `json:"xLabel"`
	YLabel string    `json:"yLabel"`
	System string    `json:"system"`
	X      []float64 `json:"x"`
	Y      []float64 `json:"y"`
}

// Plot is a drawn figure.
type Plot struct {
	File  string `json:"file"`
	Title string `json:"title"`
}

// Row is the computed line of a metric: a summary over rounds per system and
// the paired ratio of Tabby to each baseline.
type Row struct {
	Metric  Metric
	Systems map[string]stats.Summary
	Ratios  map[string]stats.Summary // by baseline system key
	Load1   stats.Summary
}

// Rows computes one Row per metric, in the order the metrics are declared.
func (b *Bench) Rows() []Row {
	var rows []Row
	for _, m := range b.Metrics {
		byRound := map[string]map[int]float64{}
		var loads []float64
		for _, s := range b.Samples {
			if s.Metric != m.Key {
				continue
			}
			if byRound[s.System] == nil {
				byRound[s.System] = map[int]float64{}
			}
			byRound[s.System][s.Round] = s.Value
			loads = append(loads, s.Load1)
		}
		if len(byRound) == 0 {
			continue
		}
		r := Row{Metric: m, Systems: map[string]stats.Summary{}, Ratios: map[string]stats.Summary{}, Load1: stats.Summarize(loads)}
		for sys, v := range byRound {
			r.Systems[sys] = stats.Summarize(values(v))
		}
		if t, ok := byRound[Tabby]; ok {
			for _, sys := range b.Systems {
				if d, ok := byRound[sys.Key]; ok && sys.Baseline {
					if ratios := stats.PairedRatios(t, d); len(ratios) > 0 {
						r.Ratios[sys.Key] = stats.Summarize(ratios)
					}
				}
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func values(m map[int]float64) []float64 {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]float64, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// Baselines returns the baseline systems of b that have samples.
func (b *Bench) Baselines() []System {
	var out []System
	for _, s := range b.Systems {
		if s.Baseline && b.hasSystem(s.Key) {
			out = append(out, s)
		}
	}
	return out
}

func (b *Bench) hasSystem(key string) bool {
	for _, s := range b.Samples {
		if s.System == key {
			return true
		}
	}
	return false
}

// systemsWithSamples lists the declared systems that have samples, Tabby first.
func (b *Bench) systemsWithSamples() []System {
	var out []System
	for _, s := range b.Systems {
		if b.hasSystem(s.Key) {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, c System) int {
		switch {
		case a.Key == Tabby && c.Key != Tabby:
			return -1
		case c.Key == Tabby && a.Key != Tabby:
			return 1
		}
		return 0
	})
	return out
}

// Label returns the label of system key, or the key.
func (b *Bench) Label(key string) string {
	for _, s := range b.Systems {
		if s.Key == key {
			return s.Label
		}
	}
	return key
}

// isNaN is math.IsNaN, for brevity in the renderers.
func isNaN(x float64) bool { return math.IsNaN(x) }
