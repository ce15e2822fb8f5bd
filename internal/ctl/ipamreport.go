package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/tabbynet/tabby/internal/ipam"
)

// ipamReport is the file `tabby ipam check -o FILE` writes and `tabby ipam
// release --from-report FILE` reads.
type ipamReport struct {
	Version   int             `json:"version"`
	Generated time.Time       `json:"generated"`
	Summary   reportSummary   `json:"summary"`
	Problems  []reportProblem `json:"problems"`
}

const ipamReportVersion = 1

type reportSummary struct {
	Pools       int `json:"pools"`
	Blocks      int `json:"blocks"`
	Allocations int `json:"allocations"`
	Handles     int `json:"handles"`
	Endpoints   int `json:"endpoints"`
	InFlight    int `json:"inFlight"`
}

type reportProblem struct {
	Kind    ipam.ProblemKind `json:"kind"`
	Address string           `json:"address,omitempty"`
	Block   string           `json:"block,omitempty"`
	Handle  string           `json:"handle,omitempty"`
	Node    string           `json:"node,omitempty"`
	// Sequence identifies the allocation (leaked addresses only).
	Sequence *uint64 `json:"sequence,omitempty"`
	Detail   string  `json:"detail,omitempty"`
}

func newIPAMReport(r ipam.Report, now time.Time) ipamReport {
	out := ipamReport{Version: ipamReportVersion, Generated: now.UTC().Truncate(time.Second), Problems: []reportProblem{},
		Summary: reportSummary{Pools: r.Pools, Blocks: r.Blocks, Allocations: r.Allocations, Handles: r.Handles, Endpoints: r.Endpoints, InFlight: r.InFlight}}
	for _, p := range r.Problems {
		rp := reportProblem{Kind: p.Kind, Handle: p.Handle, Node: p.Node, Detail: p.Detail}
		if p.Addr.IsValid() {
			rp.Address = p.Addr.String()
		}
		if p.Block.IsValid() {
			rp.Block = p.Block.String()
		}
		if p.Kind == ipam.ProblemLeaked {
			seq := p.Seq
			rp.Sequence = &seq
		}
		out.Problems = append(out.Problems, rp)
	}
	return out
}

func writeIPAMReport(path string, r ipamReport) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func readIPAMReport(path string) (ipamReport, error) {
	var r ipamReport
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("--from-report: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("--from-report %s: not a tabby ipam check report: %w", path, err)
	}
	if r.Version != ipamReportVersion {
		return r, fmt.Errorf("--from-report %s: version: %d is not supported (want %d)", path, r.Version, ipamReportVersion)
	}
	for i, p := range r.Problems {
		if p.Kind != ipam.ProblemLeaked {
			continue
		}
		if _, err := netip.ParseAddr(p.Address); err != nil {
			return r, fmt.Errorf("--from-report %s: problems[%d].address: %q is not an IP address", path, i, p.Address)
		}
		if p.Sequence == nil {
			return r, fmt.Errorf("--from-report %s: problems[%d].sequence: is required for a leaked address", path, i)
		}
	}
	return r, nil
}

// releaseFromReport releases the leaked addresses of a report that are
// still leaked now. Each one is looked up again: it must still be held by
// the same handle with the same sequence number (so an address released
// and reused meanwhile is left alone) and still belong to no live endpoint
// or node; the release itself is compare-and-swap on that handle and
// sequence number, so a reuse racing with it is left alone too.
func releaseFromReport(ctx context.Context, m *ipam.IPAM, w io.Writer, r ipamReport) error {
	released, skipped := 0, 0
	for _, p := range r.Problems {
		if p.Kind != ipam.ProblemLeaked {
			continue
		}
		a := netip.MustParseAddr(p.Address).Unmap()
		why, err := stillLeaked(ctx, m, a, p)
		if err != nil {
			return err
		}
		if why == "" {
			ok, err := m.ReleaseAllocation(ctx, a, p.Handle, *p.Sequence)
			if err != nil {
				return fmt.Errorf("release %s: %w", a, err)
			}
			if ok {
				fmt.Fprintf(w, "Released %s (handle %q)\n", a, p.Handle)
				released++
				continue
			}
			why = "it changed while being released"
		}
		fmt.Fprintf(w, "Skipped %s: %s\n", a, why)
		skipped++
	}
	fmt.Fprintf(w, "Released %d address(es), skipped %d no longer leaked.\n", released, skipped)
	return nil
}

// stillLeaked says why a reported leak is no longer one ("" if it still is).
func stillLeaked(ctx context.Context, m *ipam.IPAM, a netip.Addr, p reportProblem) (string, error) {
	info, err := m.Lookup(ctx, a)
	if err != nil {
		return "", err
	}
	switch {
	case !info.Allocated:
		return "it is no longer allocated", nil
	case info.Handle != p.Handle || info.Seq != *p.Sequence:
		return fmt.Sprintf("it was reallocated since the report (now handle %q)", info.Handle), nil
	case info.Live || len(info.Endpoints) > 0:
		return "a live endpoint or node holds it now", nil
	}
	return "", nil
}
