package ctl

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/netns"
)

// kernelCheck is one kernel feature node checksystem probes.
type kernelCheck struct {
	name     string
	usedFor  string
	required bool // missing: an error (else a warning)
	probe    func() error
	module   string // /sys/module/<module>: the fallback when probing is impossible
}

// kernelChecks are the features Tabby uses. Each is probed for real, in a
// throwaway network namespace: nftables by listing tables, VXLAN and
// IP-in-IP by creating (and with the namespace, removing) a device.
func kernelChecks() []kernelCheck {
	return []kernelCheck{
		{name: "nf_tables", usedFor: "network policy (nftables)", required: true, module: "nf_tables",
			probe: func() error { _, err := (&nftables.Conn{}).ListTables(); return err }},
		{name: "vxlan", usedFor: "pools with vxlanMode Always or CrossSubnet", module: "vxlan",
			probe: func() error {
				return netlink.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "tbycheck0"}, VxlanId: 4096, Port: 4789})
			}},
		{name: "ipip", usedFor: "pools with ipipMode Always or CrossSubnet", module: "ipip",
			probe: func() error { return netlink.LinkAdd(&netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: "tbycheck1"}}) }},
	}
}

// checkResult is the outcome of one kernelCheck.
type checkResult struct {
	check  kernelCheck
	ok     bool
	detail string
}

func newNodeCheckSystemCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "checksystem",
		Short: "Check the kernel for what Tabby uses (nf_tables, VXLAN, IP-in-IP) and report what is missing (run as root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return reportChecks(g.stdout, kernelRelease(), runKernelChecks(kernelChecks()))
		},
	}
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// runKernelChecks probes each feature in one throwaway namespace; without
// the right to create one it falls back to /sys/module.
func runKernelChecks(checks []kernelCheck) []checkResult {
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := "tabby-check-" + hex.EncodeToString(b[:])
	path, err := netns.Create(name)
	out := make([]checkResult, 0, len(checks))
	if err != nil {
		for _, c := range checks {
			r := checkResult{check: c}
			if _, serr := os.Stat("/sys/module/" + c.module); serr == nil {
				r.ok, r.detail = true, "module loaded (not probed: "+err.Error()+")"
			} else {
				r.detail = "could not probe (run as root): " + err.Error()
			}
			out = append(out, r)
		}
		return out
	}
	defer func() { _ = netns.Delete(name) }()
	for _, c := range checks {
		r := checkResult{check: c}
		if perr := netns.Do(path, c.probe); perr != nil {
			r.detail = perr.Error()
		} else {
			r.ok = true
		}
		out = append(out, r)
	}
	return out
}

// reportChecks prints the results; a missing required feature is exit 1.
func reportChecks(w io.Writer, release string, rs []checkResult) error {
	fmt.Fprintf(w, "Checking kernel %s for what Tabby uses:\n", release)
	errs, warns := 0, 0
	for _, r := range rs {
		status := "OK"
		switch {
		case r.ok:
		case r.check.required:
			status, errs = "MISSING", errs+1
		default:
			status, warns = "MISSING (warning)", warns+1
		}
		line := fmt.Sprintf("  %-10s %-18s needed for %s", r.check.name, status, r.check.usedFor)
		if r.detail != "" {
			line += ": " + r.detail
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "System check: %d error(s), %d warning(s).\n", errs, warns)
	if errs > 0 {
		return exitError{code: 1, msg: "the kernel lacks what Tabby needs (see above)"}
	}
	return nil
}
