// Package stats computes the figures Tabby's benchmark report shows:
// nearest-rank percentiles, median with min and max, and paired ratios
// (Tabby ÷ baseline within the same round, then the median over rounds),
// the method of the machine baselines. It is pure and imports only the
// standard library; it must not import any other Tabby package.
package stats

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of xs:
// the value at rank ceil(p/100·n) of the sorted samples, as the baseline
// scripts compute it. It returns NaN for no samples. xs is not modified.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	r := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(0, min(len(s)-1, r-1))]
}

// Median returns the median of xs (the mean of the two middle values for
// an even count), NaN for no samples.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Summary is the median, minimum and maximum of some samples.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize returns the Summary of xs; NaN values are skipped.
func Summarize(xs []float64) Summary {
	var ok []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			ok = append(ok, x)
		}
	}
	if len(ok) == 0 {
		return Summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	return Summary{N: len(ok), Median: Median(ok), Min: slices.Min(ok), Max: slices.Max(ok)}
}

// PairedRatios returns num[r]/den[r] for every round r present in both
// maps with a non-zero denominator, in round order.
func PairedRatios(num, den map[int]float64) []float64 {
	var rounds []int
	for r := range num {
		if d, ok := den[r]; ok && d != 0 && !math.IsNaN(d) && !math.IsNaN(num[r]) {
			rounds = append(rounds, r)
		}
	}
	slices.Sort(rounds)
	out := make([]float64, 0, len(rounds))
	for _, r := range rounds {
		out = append(out, num[r]/den[r])
	}
	return out
}

// Millis converts durations to float milliseconds.
func Millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}
