package report

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// PlotJob is one figure: a data file and the gnuplot script that draws it
// into PNG (both are kept next to the PNG, so a figure can be redrawn).
type PlotJob struct {
	Bench  string
	Title  string
	Base   string // file name without extension, under plots/
	Data   string
	Script string
}

// PlotJobs builds the figures of every benchmark: one CDF per group of
// Dists and one line chart per group of Series. Pure.
func (r *Report) PlotJobs() []PlotJob {
	var jobs []PlotJob
	for _, b := range r.Benches {
		for _, key := range distKeys(b.Dists) {
			jobs = append(jobs, cdfJob(b, key))
		}
		for _, key := range seriesKeys(b.Series) {
			jobs = append(jobs, seriesJob(b, key))
		}
	}
	return jobs
}

func distKeys(ds []Dist) []string {
	var keys []string
	for _, d := range ds {
		if !slices.Contains(keys, d.Plot) {
			keys = append(keys, d.Plot)
		}
	}
	return keys
}

func seriesKeys(ss []Series) []string {
	var keys []string
	for _, s := range ss {
		if !slices.Contains(keys, s.Plot) {
			keys = append(keys, s.Plot)
		}
	}
	return keys
}

func fileBase(bench, plot string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(bench + "-" + plot) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// gpString quotes s for a gnuplot double-quoted string.
func gpString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

const gpHeader = `set terminal pngcairo size 900,540 enhanced font "sans,11"
set output %s
set title %s noenhanced
set grid
set key bottom right noenhanced
`

func cdfJob(b *Bench, key string) PlotJob {
	base := fileBase(b.ID, key)
	var data, plots strings.Builder
	var title, unit string
	lo, hi := 0.0, 0.0
	idx := 0
	for _, d := range b.Dists {
		if d.Plot != key || len(d.Values) == 0 {
			continue
		}
		if title == "" {
			title, unit = d.Title, d.Unit
		}
		v := slices.Clone(d.Values)
		slices.Sort(v)
		if idx == 0 || v[0] < lo {
			lo = v[0]
		}
		if v[len(v)-1] > hi {
			hi = v[len(v)-1]
		}
		fmt.Fprintf(&data, "# %s\n", b.Label(d.System))
		for i, x := range v {
			fmt.Fprintf(&data, "%g %.6g\n", x, float64(i+1)/float64(len(v)))
		}
		data.WriteString("\n\n")
		if idx > 0 {
			plots.WriteString(", \\\n     ")
		}
		fmt.Fprintf(&plots, "%s index %d using 1:2 with steps lw 2 title %s", gpString(base+".dat"), idx, gpString(fmt.Sprintf("%s (n=%d)", b.Label(d.System), len(v))))
		idx++
	}
	var s strings.Builder
	fmt.Fprintf(&s, gpHeader, gpString(base+".png"), gpString(b.Title+": "+title))
	fmt.Fprintf(&s, "set xlabel %s\nset ylabel \"fraction of operations ≤ x\"\nset yrange [0:1.02]\n", gpString(unit))
	if lo > 0 && hi/lo > 30 {
		s.WriteString("set logscale x\n")
	}
	s.WriteString("plot " + plots.String() + "\n")
	return PlotJob{Bench: b.ID, Title: b.Title + ": " + title, Base: base, Data: data.String(), Script: s.String()}
}

func seriesJob(b *Bench, key string) PlotJob {
	base := fileBase(b.ID, key)
	var data, plots strings.Builder
	var title, xl, yl string
	idx := 0
	for _, sr := range b.Series {
		if sr.Plot != key || len(sr.X) == 0 {
			continue
		}
		if title == "" {
			title, xl, yl = sr.Title, sr.XLabel, sr.YLabel
		}
		fmt.Fprintf(&data, "# %s\n", sr.System)
		for i := range min(len(sr.X), len(sr.Y)) {
			fmt.Fprintf(&data, "%g %g\n", sr.X[i], sr.Y[i])
		}
		data.WriteString("\n\n")
		if idx > 0 {
			plots.WriteString(", \\\n     ")
		}
		fmt.Fprintf(&plots, "%s index %d using 1:2 with linespoints lw 2 pt 7 title %s", gpString(base+".dat"), idx, gpString(sr.System))
		idx++
	}
	var s strings.Builder
	fmt.Fprintf(&s, gpHeader, gpString(base+".png"), gpString(b.Title+": "+title))
	fmt.Fprintf(&s, "set xlabel %s\nset ylabel %s\nset key below\nset yrange [0:*]\n", gpString(xl), gpString(yl))
	s.WriteString("plot " + plots.String() + "\n")
	return PlotJob{Bench: b.ID, Title: b.Title + ": " + title, Base: base, Data: data.String(), Script: s.String()}
}

// DrawPlots writes every PlotJob into dir/plots and runs gnuplot on it,
// recording the PNGs in their benchmarks. Without gnuplot it writes the data
// and scripts only and says so in r.PlotNote.
func (r *Report) DrawPlots(ctx context.Context, dir string) error {
	jobs := r.PlotJobs()
	if len(jobs) == 0 {
		return nil
	}
	pdir := filepath.Join(dir, "plots")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return fmt.Errorf("create plot directory: %w", err)
	}
	gnuplot, lookErr := exec.LookPath("gnuplot")
	if lookErr != nil {
		r.PlotNote = "gnuplot is not installed (apt-get install gnuplot-nox); the data and gnuplot scripts are in plots/"
	}
	var failed []string
	for _, j := range jobs {
		if err := os.WriteFile(filepath.Join(pdir, j.Base+".dat"), []byte(j.Data), 0o644); err != nil {
			return fmt.Errorf("write plot data: %w", err)
		}
		if err := os.WriteFile(filepath.Join(pdir, j.Base+".gp"), []byte(j.Script), 0o644); err != nil {
			return fmt.Errorf("write plot script: %w", err)
		}
		if lookErr != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		cmd := exec.CommandContext(cctx, gnuplot, j.Base+".gp")
		cmd.Dir = pdir
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v %s", j.Base, err, strings.TrimSpace(string(out))))
			continue
		}
		for _, b := range r.Benches {
			if b.ID == j.Bench {
				b.Plots = append(b.Plots, Plot{File: "plots/" + j.Base + ".png", Title: j.Title})
			}
		}
	}
	if len(failed) > 0 {
		r.PlotNote = "gnuplot failed for " + strings.Join(failed, "; ")
	}
	return nil
}
