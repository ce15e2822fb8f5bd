// Command tabby-bench runs Tabby's benchmarks against their baselines
// (`make bench`, `make bench-quick`); main only dispatches to
// bench/internal/benchcli.
package main

import (
	"os"

	"github.com/tabbynet/tabby/bench/internal/benchcli"
)

func main() { os.Exit(benchcli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
