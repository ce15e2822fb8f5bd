package report

import (
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tabbynet/tabby/bench/internal/stats"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixture is a small report: one benchmark with a baseline, one without,
// one skipped.
func fixture() *Report {
	start := time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)
	cni := &Bench{ID: "cni", Title: "CNI ADD/DEL latency", What: "What it measures.", Baseline: "ptp + host-local.", Method: "Rounds.",
		Systems: []System{{Key: Tabby, Label: "Tabby"}, {Key: "ptp", Label: "ptp + host-local", Baseline: true}},
		Metrics: []Metric{{Key: "add", Label: "ADD p50", Unit: "ms", LowerIsBetter: true}, {Key: "qps", Label: "queries", Unit: "1/s"}},
		Status:  StatusOK, Seconds: 12,
		Notes: []string{"a note"},
		Plots: []Plot{{File: "plots/cni-add.png", Title: "ADD"}},
	}
	for r, v := range [][2]float64{{20, 10}, {30, 10}, {25, 12.5}} {
		cni.Samples = append(cni.Samples,
			Sample{Metric: "add", System: Tabby, Round: r + 1, Value: v[0], Load1: 1.5},
			Sample{Metric: "add", System: "ptp", Round: r + 1, Value: v[1], Load1: 2.5},
			Sample{Metric: "qps", System: Tabby, Round: r + 1, Value: 12345.6 * float64(r+1), Load1: 2})
	}
	scale := &Bench{ID: "scale", Title: "Scale", Systems: []System{{Key: Tabby, Label: "Tabby"}},
		Metrics: []Metric{{Key: "rss", Label: "agent memory", Unit: "MiB", LowerIsBetter: true}},
		Samples: []Sample{{Metric: "rss", System: Tabby, Round: 1, Value: 81.5}}, Status: StatusOK, Seconds: 120}
	dns := &Bench{ID: "dns", Title: "DNS", Status: StatusSkipped, Reason: "missing dnsperf"}
	return &Report{Started: start, Finished: start.Add(3 * time.Minute), Mode: "quick", Rounds: 3, Command: "tabby-bench --quick",
		Machine: Machine{CPUs: 2, CPUModel: "Test CPU", MemTotal: "1.0 GiB", Kernel: "6.18", OS: "Debian", GoVersion: "go1.26.8",
			Tabby: "v0", LoadStart: "1.00 1.00 1.00", LoadEnd: "2.00 2.00 2.00", Tools: map[string]string{"iperf3": "3.12"}},
		Benches: []*Bench{cni, scale, dns}}
}

func TestRows(t *testing.T) {
	rows := fixture().Benches[0].Rows()
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	add := rows[0]
	want := map[string]stats.Summary{Tabby: {N: 3, Median: 25, Min: 20, Max: 30}, "ptp": {N: 3, Median: 10, Min: 10, Max: 12.5}}
	if diff := cmp.Diff(want, add.Systems); diff != "" {
		t.Errorf("systems (-want +got):\n%s", diff)
	}
	// Paired per round: 20/10, 30/10, 25/12.5 = 2, 3, 2.
	if diff := cmp.Diff(map[string]stats.Summary{"ptp": {N: 3, Median: 2, Min: 2, Max: 3}}, add.Ratios); diff != "" {
		t.Errorf("ratios (-want +got):\n%s", diff)
	}
	if len(rows[1].Ratios) != 0 {
		t.Errorf("a metric without baseline samples got ratios %v", rows[1].Ratios)
	}
}

func TestMarkdownGolden(t *testing.T) {
	got := fixture().Markdown()
	golden := filepath.Join("testdata", "report.md")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("report.md differs from %s (-want +got):\n%s", golden, diff)
	}
}

func TestNum(t *testing.T) {
	tests := []struct {
		name string
		in   float64
		want string
	}{
		{"zero", 0, "0"},
		{"small", 0.01234, "0.0123"},
		{"one", 1.234, "1.23"},
		{"tens", 12.34, "12.3"},
		{"hundreds", 123.4, "123"},
		{"thousands", 1234567, "1,234,567"},
		{"negative thousands", -1234, "-1,234"},
		{"NaN", math.NaN(), "—"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := num(tc.in); got != tc.want {
				t.Errorf("num(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestPlotJobs(t *testing.T) {
	r := fixture()
	b := r.Benches[0]
	b.Dists = []Dist{
		{Plot: "add", Title: "ADD latency", Unit: "ms", System: Tabby, Values: []float64{3, 1, 2}},
		{Plot: "add", Title: "ADD latency", Unit: "ms", System: "ptp", Values: []float64{1000}},
	}
	b.Series = []Series{
		{Plot: "mem", Title: "memory", XLabel: "hosts", YLabel: "MiB", System: "RSS", X: []float64{5, 10}, Y: []float64{80, 90}},
		{Plot: "mem", System: "max", X: []float64{5}, Y: []float64{100}},
	}
	jobs := r.PlotJobs()
	var bases []string
	for _, j := range jobs {
		bases = append(bases, j.Base)
	}
	if diff := cmp.Diff([]string{"cni-add", "cni-mem"}, bases); diff != "" {
		t.Fatalf("plot files (-want +got):\n%s", diff)
	}
	cdf := jobs[0]
	if !strings.HasPrefix(cdf.Data, "# Tabby\n1 0.333333\n2 0.666667\n3 1\n\n\n# ptp + host-local\n1000 1\n") {
		t.Errorf("CDF data is sorted values with cumulative fractions; got:\n%s", cdf.Data)
	}
	for _, want := range []string{`set output "cni-add.png"`, "set logscale x", `title "Tabby (n=3)"`, `index 1`} {
		if !strings.Contains(cdf.Script, want) {
			t.Errorf("CDF script lacks %q:\n%s", want, cdf.Script)
		}
	}
	line := jobs[1]
	for _, want := range []string{`set title "CNI ADD/DEL latency: memory" noenhanced`, `set xlabel "hosts"`, `title "max"`} {
		if !strings.Contains(line.Script, want) {
			t.Errorf("series script lacks %q:\n%s", want, line.Script)
		}
	}
}

func TestGPStringEscapes(t *testing.T) {
	if got, want := gpString(`a "b" \c`), `"a \"b\" \\c"`; got != want {
		t.Errorf("gpString = %s, want %s", got, want)
	}
}

func TestWriteDropsNaN(t *testing.T) {
	r := fixture()
	r.Benches[0].Samples = append(r.Benches[0].Samples, Sample{Metric: "add", System: Tabby, Round: 9, Value: math.NaN()})
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatalf("Write: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results.json does not parse: %v", err)
	}
	if got, want := len(back.Benches[0].Samples), len(fixture().Benches[0].Samples); got != want {
		t.Errorf("got %d samples back, want %d (the NaN dropped)", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.md")); err != nil {
		t.Errorf("report.md: %v", err)
	}
	if diff := cmp.Diff(fixture().Machine, back.Machine, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("machine round trip (-want +got):\n%s", diff)
	}
}

func TestDrawPlotsWithoutGnuplot(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	r := fixture()
	r.Benches[0].Dists = []Dist{{Plot: "add", Title: "ADD", Unit: "ms", System: Tabby, Values: []float64{1}}}
	dir := t.TempDir()
	if err := r.DrawPlots(context.Background(), dir); err != nil {
		t.Fatalf("DrawPlots: %v", err)
	}
	if !strings.Contains(r.PlotNote, "gnuplot is not installed") {
		t.Errorf("PlotNote = %q, want it to say gnuplot is missing", r.PlotNote)
	}
	for _, f := range []string{"cni-add.dat", "cni-add.gp"} {
		if _, err := os.Stat(filepath.Join(dir, "plots", f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}
