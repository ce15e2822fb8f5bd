// Command tabby is Tabby's CLI and the entry point of its daemons (agent,
// datastore, dns); main only dispatches to internal/ctl.
package main

import (
	"os"

	"github.com/tabbynet/tabby/internal/ctl"
)

func main() { os.Exit(ctl.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
