package stats

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100..1, unsorted on purpose
	}
	tests := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"p50 of 1..100 is rank 50", hundred, 50, 50},
		{"p99 of 1..100 is rank 99", hundred, 99, 99},
		{"p100 is the max", hundred, 100, 100},
		{"tiny p is the min", hundred, 0.1, 1},
		{"one sample", []float64{7}, 99, 7},
		{"p99 of 3 samples is the max", []float64{3, 1, 2}, 99, 3},
		{"p50 of 4 samples is rank 2", []float64{4, 3, 2, 1}, 50, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.xs, tc.p); got != tc.want {
				t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("Percentile(nil) = %v, want NaN", got)
	}
}

func TestPercentileDoesNotSortInput(t *testing.T) {
	xs := []float64{3, 1, 2}
	Percentile(xs, 50)
	Median(xs)
	if diff := cmp.Diff([]float64{3, 1, 2}, xs); diff != "" {
		t.Errorf("input changed (-want +got):\n%s", diff)
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want Summary
	}{
		{"odd", []float64{5, 1, 3}, Summary{N: 3, Median: 3, Min: 1, Max: 5}},
		{"even", []float64{4, 1, 2, 3}, Summary{N: 4, Median: 2.5, Min: 1, Max: 4}},
		{"NaN skipped", []float64{math.NaN(), 2}, Summary{N: 1, Median: 2, Min: 2, Max: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Summarize(tc.xs)); diff != "" {
				t.Errorf("Summarize(%v) (-want +got):\n%s", tc.xs, diff)
			}
		})
	}
	if s := Summarize(nil); s.N != 0 || !math.IsNaN(s.Median) {
		t.Errorf("Summarize(nil) = %+v, want N 0 and NaN median", s)
	}
}

func TestPairedRatios(t *testing.T) {
	tests := []struct {
		name     string
		num, den map[int]float64
		want     []float64
	}{
		{"same rounds", map[int]float64{1: 10, 2: 30}, map[int]float64{1: 20, 2: 10}, []float64{0.5, 3}},
		{"round missing on one side", map[int]float64{1: 10, 2: 30}, map[int]float64{2: 10}, []float64{3}},
		{"zero denominator skipped", map[int]float64{1: 10, 2: 30}, map[int]float64{1: 0, 2: 10}, []float64{3}},
		{"none", nil, nil, []float64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, PairedRatios(tc.num, tc.den)); diff != "" {
				t.Errorf("PairedRatios (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMillis(t *testing.T) {
	got := Millis([]time.Duration{1500 * time.Microsecond, 2 * time.Second})
	if diff := cmp.Diff([]float64{1.5, 2000}, got); diff != "" {
		t.Errorf("Millis (-want +got):\n%s", diff)
	}
}
