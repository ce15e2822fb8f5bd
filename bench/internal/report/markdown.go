package report

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/bench/internal/stats"
)

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Tabby benchmark report — %s\n\n", r.Started.UTC().Format("2006-01-02 15:04 MST"))
	w("`%s` — %s mode, %d rounds per benchmark, %s in all.\n\n", r.Command, r.Mode, r.Rounds,
		r.Finished.Sub(r.Started).Round(1e9))
	w("Every figure is the **median over rounds** with (min–max) over rounds. In each round Tabby and\n")
	w("its baselines run one after the other (the order alternates between rounds), so every ratio is\n")
	w("**Tabby ÷ baseline within the same round**, median (min–max) over rounds: on a shared machine\n")
	w("only these paired ratios are stable, absolute numbers move with the neighbours' load.\n")
	w("A ratio below 1 is better for Tabby when lower is better (↓), above 1 when higher is better (↑).\n\n")

	m := r.Machine
	w("## Machine\n\n| | |\n|---|---|\n")
	w("| CPUs | %d × %s |\n", m.CPUs, orDash(m.CPUModel))
	w("| memory | %s |\n", orDash(m.MemTotal))
	w("| kernel | %s |\n", orDash(m.Kernel))
	w("| OS | %s |\n", orDash(m.OS))
	w("| load average (1, 5, 15 min) | start %s; end %s |\n", orDash(m.LoadStart), orDash(m.LoadEnd))
	w("| Tabby | %s |\n", orDash(m.Tabby))
	w("| Go | %s |\n", orDash(m.GoVersion))
	tools := make([]string, 0, len(m.Tools))
	for k := range m.Tools {
		tools = append(tools, k)
	}
	slices.Sort(tools)
	for _, k := range tools {
		w("| %s | %s |\n", k, m.Tools[k])
	}
	w("\n")

	w("## Summary\n\n")
	w("| benchmark | metric | Tabby | baseline | baseline figure | Tabby ÷ baseline |\n|---|---|---|---|---|---|\n")
	for _, bn := range r.Benches {
		if bn.Status != StatusOK {
			w("| [%s](#%s) | *%s: %s* | | | | |\n", bn.Title, anchor(bn.Title), bn.Status, oneLine(bn.Reason))
			continue
		}
		for _, row := range bn.Rows() {
			t, ok := row.Systems[Tabby]
			if !ok {
				continue
			}
			bases := bn.Baselines()
			if len(bases) == 0 || len(row.Ratios) == 0 {
				w("| [%s](#%s) | %s | %s | | | |\n", bn.Title, anchor(bn.Title), metricLabel(row.Metric), fig(t))
				continue
			}
			for _, s := range bases {
				ratio, ok := row.Ratios[s.Key]
				if !ok {
					continue
				}
				w("| [%s](#%s) | %s | %s | %s | %s | %s |\n", bn.Title, anchor(bn.Title), metricLabel(row.Metric), fig(t),
					s.Label, fig(row.Systems[s.Key]), ratioFig(ratio))
			}
		}
	}
	w("\n")
	if r.PlotNote != "" {
		w("*Plots: %s*\n\n", r.PlotNote)
	}

	for _, bn := range r.Benches {
		r.benchSection(&b, bn)
	}
	return b.String()
}

func (r *Report) benchSection(b *strings.Builder, bn *Bench) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("## %s\n\n", bn.Title)
	if bn.What != "" {
		w("%s\n\n", strings.TrimSpace(bn.What))
	}
	if bn.Baseline != "" {
		w("**Baseline.** %s\n\n", strings.TrimSpace(bn.Baseline))
	}
	if bn.Method != "" {
		w("**Method.** %s\n\n", strings.TrimSpace(bn.Method))
	}
	switch bn.Status {
	case StatusSkipped:
		w("**Skipped:** %s\n\n", bn.Reason)
		return
	case StatusFailed:
		w("**Failed:** %s\n\n", bn.Reason)
		if len(bn.Samples) == 0 {
			return
		}
		w("Samples taken before the failure:\n\n")
	}
	systems := bn.systemsWithSamples()
	bases := bn.Baselines()
	w("| metric |")
	for _, s := range systems {
		w(" %s |", s.Label)
	}
	for _, s := range bases {
		w(" Tabby ÷ %s |", s.Label)
	}
	w(" load1 |\n|---|")
	for range len(systems) + len(bases) {
		w("---|")
	}
	w("---|\n")
	for _, row := range bn.Rows() {
		w("| %s |", metricLabel(row.Metric))
		for _, s := range systems {
			if sum, ok := row.Systems[s.Key]; ok {
				if s.Key == Tabby {
					w(" **%s** |", fig(sum))
				} else {
					w(" %s |", fig(sum))
				}
			} else {
				w(" — |")
			}
		}
		for _, s := range bases {
			if ratio, ok := row.Ratios[s.Key]; ok {
				w(" %s |", ratioFig(ratio))
			} else {
				w(" — |")
			}
		}
		w(" %s–%s |\n", num(row.Load1.Min), num(row.Load1.Max))
	}
	w("\n")
	for _, n := range bn.Notes {
		w("- %s\n", n)
	}
	if len(bn.Notes) > 0 {
		w("\n")
	}
	for _, p := range bn.Plots {
		w("![%s](%s)\n\n", p.Title, p.File)
	}
	w("*%d sample%s, %s.*\n\n", len(bn.Samples), map[bool]string{true: "s"}[len(bn.Samples) != 1], secs(bn.Seconds))
}

func metricLabel(m Metric) string {
	arrow := "↑"
	if m.LowerIsBetter {
		arrow = "↓"
	}
	if m.Unit == "" {
		return fmt.Sprintf("%s %s", m.Label, arrow)
	}
	return fmt.Sprintf("%s (%s) %s", m.Label, m.Unit, arrow)
}

// fig formats "median (min–max)"; a single sample shows the value alone.
func fig(s stats.Summary) string {
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 || s.Min == s.Max {
		return num(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.Median), num(s.Min), num(s.Max))
}

func ratioFig(s stats.Summary) string {
	if s.N == 0 {
		return "—"
	}
	f := func(x float64) string { return fmt.Sprintf("%.2f", x) }
	if s.N == 1 || s.Min == s.Max {
		return "**" + f(s.Median) + "**"
	}
	return fmt.Sprintf("**%s** (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

// num formats a figure with about three significant digits and thousands
// separators: 0.123, 1.23, 12.3, 123, 12,345.
func num(x float64) string {
	switch a := math.Abs(x); {
	case isNaN(x):
		return "—"
	case a >= 1000:
		return thousands(fmt.Sprintf("%.0f", x))
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	case a >= 1:
		return fmt.Sprintf("%.2f", x)
	case a == 0:
		return "0"
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

func thousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func secs(s float64) string {
	if s >= 90 {
		return fmt.Sprintf("%.1f min", s/60)
	}
	return fmt.Sprintf("%.0f s", s)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// anchor is GitHub's heading anchor for a title.
func anchor(title string) string {
	var out []rune
	for _, c := range strings.ToLower(title) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			out = append(out, c)
		case c == ' ':
			out = append(out, '-')
		case c > 127 && c != '→' && c != '÷' && c != '—' && c != '–':
			out = append(out, c)
		}
	}
	return string(out)
}
