// Package benchcli is the command line of tabby-bench: flags, signal
// handling, stale-run cleanup, and the helper roles the bench re-executes
// itself as inside namespaces. It must not import the agent, the DNS
// server or ctl.
package benchcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/suite"
	"github.com/tabbynet/tabby/internal/lab"
)

// Main runs tabby-bench with args (without the program name) and returns
// the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "helper" {
		return suite.Helper(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("tabby-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "short mode: fewer rounds and shorter runs (under 5 minutes)")
	rounds := fs.Int("rounds", 0, "rounds per benchmark (default 5, quick 2)")
	only := fs.String("only", "", "comma-separated benchmark IDs to run (default: all)")
	skip := fs.String("skip", "", "comma-separated benchmark IDs to skip")
	bin := fs.String("bin", "bin", "directory holding the tabby and tabby-cni binaries")
	out := fs.String("out", "bench/results", "results root; the report goes to OUT/<date>/")
	list := fs.Bool("list", false, "list the benchmarks and exit")
	verbose := fs.Bool("v", false, "debug logging")
	version := fs.String("tabby-version", "", "Tabby version to show in the report")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tabby-bench [flags]\n\nRuns Tabby's benchmarks against their baselines and writes OUT/<date>/report.md,\nresults.json and plots/. Needs root. Flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	all := suite.All()
	if *list {
		for _, b := range all {
			fmt.Fprintf(stdout, "%-10s %s\n", b.ID, b.Title)
		}
		return 0
	}
	ids := map[string]bool{}
	for _, b := range all {
		ids[b.ID] = true
	}
	onlyL, skipL := splitList(*only), splitList(*skip)
	for _, id := range append(append([]string{}, onlyL...), skipL...) {
		if !ids[id] {
			fmt.Fprintf(stderr, "tabby-bench: unknown benchmark %q (see --list)\n", id)
			return 2
		}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "tabby-bench: must run as root (it creates network namespaces)")
		return 1
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	binDir, err := filepath.Abs(*bin)
	if err != nil {
		fmt.Fprintf(stderr, "tabby-bench: %v\n", err)
		return 1
	}
	for _, b := range []string{"tabby", "tabby-cni"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			fmt.Fprintf(stderr, "tabby-bench: %s not found in %s (run make build, or pass --bin)\n", b, binDir)
			return 1
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "tabby-bench: %v\n", err)
		return 1
	}
	did, err := harness.CleanStale("", func(name string) error { return lab.Down(context.Background(), lab.DefaultStateRoot, name, log) })
	for _, d := range did {
		log.Info("removed leftover of a killed run", "what", d)
	}
	if err != nil {
		log.Warn("cleaning up after a killed run", "err", err)
	}
	j, err := harness.NewJanitor("", log)
	if err != nil {
		fmt.Fprintf(stderr, "tabby-bench: %v\n", err)
		return 1
	}
	defer j.Finish()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := "tabby-bench " + strings.Join(args, " ")
	dir, rep, err := harness.RunAll(ctx, harness.Options{Quick: *quick, Rounds: *rounds, Only: onlyL, Skip: skipL, Bin: binDir, Self: self,
		Out: *out, Command: strings.TrimSpace(cmd), Tabby: *version, Log: log}, all, j)
	if dir != "" {
		fmt.Fprintf(stdout, "report: %s\n", filepath.Join(dir, "report.md"))
	}
	if err != nil {
		fmt.Fprintf(stderr, "tabby-bench: %v\n", err)
		return 1
	}
	failed := 0
	for _, b := range rep.Benches {
		fmt.Fprintf(stdout, "%-10s %-8s %.0fs %s\n", b.ID, b.Status, b.Seconds, b.Reason)
		if b.Status == "failed" {
			failed++
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
