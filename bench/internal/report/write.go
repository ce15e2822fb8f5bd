package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Write writes dir/results.json and dir/report.md.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create report directory: %w", err)
	}
	b, err := json.MarshalIndent(r.jsonSafe(), "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.Markdown()), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// jsonSafe returns a copy without NaN or Inf values (JSON has none).
func (r *Report) jsonSafe() *Report {
	c := *r
	c.Benches = nil
	for _, b := range r.Benches {
		nb := *b
		nb.Samples = nil
		for _, s := range b.Samples {
			if !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0) {
				nb.Samples = append(nb.Samples, s)
			}
		}
		c.Benches = append(c.Benches, &nb)
	}
	return &c
}
