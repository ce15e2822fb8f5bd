// Command tabby-cni is Tabby's CNI plugin. The runtime executes it as
// "tabby" (full attach) or "tabby-ipam" (addresses only, for another
// plugin); it forwards each request to the local tabby agent. main only
// dispatches to internal/cni, and the binary must link no etcd, GoBGP,
// nftables or netlink code so that it starts in a few milliseconds.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/version"
)

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }

// action is what a command line asks for.
type action int

const (
	actionCNI     action = iota // a CNI command from the environment
	actionVersion               // print tabby-cni's own version
)

// dispatch picks the action from the command line: the runtime passes no
// arguments; "-v", "--version" or "version" print the version (as
// Calico's plugin).
func dispatch(args []string) action {
	if len(args) > 1 {
		switch args[1] {
		case "-v", "--version", "version":
			return actionVersion
		}
	}
	return actionCNI
}

func run(args []string, stdout, stderr io.Writer) int {
	argv0 := "tabby-cni"
	if len(args) > 0 {
		argv0 = args[0]
	}
	p := cni.NewPlugin(cni.PluginOptions{Argv0: argv0, Stdout: stdout, Stderr: stderr, Version: version.String()})
	if dispatch(args) == actionVersion {
		fmt.Fprintln(stdout, p.About())
		return 0
	}
	if e := skel.PluginMainFuncsWithError(p.Funcs(), cni.VersionInfo, p.About()); e != nil {
		if err := p.WriteError(stdout, e); err != nil {
			fmt.Fprintf(stderr, "tabby-cni: %v (while reporting: %v)\n", err, e)
		}
		return 1
	}
	return 0
}
