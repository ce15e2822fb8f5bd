package ctl

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/agent/routing/router"
	"github.com/tabbynet/tabby/internal/version"
)

func init() {
	nodeSubcommands = append(nodeSubcommands, newNodeDiagsCommand, newNodeCheckSystemCommand)
}

// DefaultAgentLogs are the agent log files node diags looks for when
// --agent-log is not given.
var DefaultAgentLogs = []string{"/var/log/tabby/agent.log", "/var/log/tabby-agent.log"}

// diagPart is one file of the diagnostics archive and how to collect it.
type diagPart struct {
	name    string // path inside the archive, under the top directory
	collect func(ctx context.Context) ([]byte, error)
}

type diagsOptions struct {
	agentHTTP string
	logs      []string
	output    string
	timeout   time.Duration
}

func newNodeDiagsCommand(g *globals) *cobra.Command {
	var o diagsOptions
	cmd := &cobra.Command{
		Use:   "diags [-o FILE.tar.gz] [--agent-log FILE] [--agent-http ADDR]",
		Short: "Collect this node's agent logs, nftables ruleset, routes, BGP state and agent cache into one tar.gz (run on the node, as root)",
		Long: "Writes a tar.gz holding, under tabby-diags-<host>-<time>/:\n" +
			"  README.txt             what was collected, and what could not be (with the error)\n" +
			"  version.txt            this tool's version and the kernel's\n" +
			"  agent/agent.log        the agent's log (--agent-log, else " + strings.Join(DefaultAgentLogs, " or ") + ", else journalctl -u tabby-agent)\n" +
			"  agent/cache.json       the agent's cache of datastore resources (its HTTP " + agent.CachePath + ")\n" +
			"  agent/metrics.txt      the agent's Prometheus metrics\n" +
			"  bgp/status.json        BGP sessions as tabby node status sees them (" + router.StatusPath + ")\n" +
			"  nftables/ruleset.txt   nft list ruleset\n" +
			"  network/routes.txt     ip route show table all (IPv4 and IPv6)\n" +
			"  network/addresses.txt  ip -d address\n" +
			"  network/rules.txt      ip rule (IPv4 and IPv6)\n" +
			"A part that cannot be collected is replaced by <part>.error.txt; the archive is still written.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.timeout = g.timeout
			host, _ := os.Hostname()
			top := fmt.Sprintf("tabby-diags-%s-%s", host, time.Now().UTC().Format("20060102T150405Z"))
			if o.output == "" {
				o.output = top + ".tar.gz"
			}
			failed, err := writeDiags(cmd.Context(), o.output, top, diagParts(o))
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Diagnostics written to %s", o.output)
			if len(failed) > 0 {
				fmt.Fprintf(g.stdout, " (not collected: %s; see README.txt)", strings.Join(failed, ", "))
			}
			fmt.Fprintln(g.stdout)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.agentHTTP, "agent-http", agent.DefaultHTTPListen, "the agent's HTTP address (its --http-listen)")
	f.StringArrayVar(&o.logs, "agent-log", nil, "the agent's log file (repeatable)")
	f.StringVarP(&o.output, "output", "o", "", "the archive to write (default ./tabby-diags-<host>-<time>.tar.gz)")
	return cmd
}

// diagParts lists what the archive holds, in order.
func diagParts(o diagsOptions) []diagPart {
	cmdOut := func(name string, args ...string) func(context.Context) ([]byte, error) {
		return func(ctx context.Context) ([]byte, error) { return runTool(ctx, name, args...) }
	}
	both := func(a, b func(context.Context) ([]byte, error)) func(context.Context) ([]byte, error) {
		return func(ctx context.Context) ([]byte, error) {
			x, err := a(ctx)
			if err != nil {
				return nil, err
			}
			y, err := b(ctx)
			return append(append(x, '\n'), y...), err
		}
	}
	return []diagPart{
		{"version.txt", func(ctx context.Context) ([]byte, error) {
			rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
			return fmt.Appendf(nil, "tabby %s\nkernel %s", version.String(), rel), nil
		}},
		{"agent/agent.log", func(ctx context.Context) ([]byte, error) { return agentLogs(ctx, o.logs) }},
		{"agent/cache.json", func(ctx context.Context) ([]byte, error) {
			return httpGet(ctx, o.agentHTTP, agent.CachePath, o.timeout)
		}},
		{"agent/metrics.txt", func(ctx context.Context) ([]byte, error) { return httpGet(ctx, o.agentHTTP, "/metrics", o.timeout) }},
		{"bgp/status.json", func(ctx context.Context) ([]byte, error) {
			return httpGet(ctx, o.agentHTTP, router.StatusPath, o.timeout)
		}},
		{"nftables/ruleset.txt", cmdOut("nft", "list", "ruleset")},
		{"network/routes.txt", both(cmdOut("ip", "-4", "route", "show", "table", "all"), cmdOut("ip", "-6", "route", "show", "table", "all"))},
		{"network/addresses.txt", cmdOut("ip", "-d", "address")},
		{"network/rules.txt", both(cmdOut("ip", "-4", "rule"), cmdOut("ip", "-6", "rule"))},
	}
}

// writeDiags collects every part and writes the archive; a part that
// fails becomes <part>.error.txt. It returns the parts that failed.
func writeDiags(ctx context.Context, path, top string, parts []diagPart) ([]string, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node diags: %w", err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	now := time.Now()
	add := func(name string, data []byte) error {
		h := &tar.Header{Name: top + "/" + name, Mode: 0o600, Size: int64(len(data)), ModTime: now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	var failed []string
	var readme strings.Builder
	fmt.Fprintf(&readme, "Tabby node diagnostics, %s\n\n", now.UTC().Format(time.RFC3339))
	for _, p := range parts {
		data, err := p.collect(ctx)
		if err != nil {
			failed = append(failed, p.name)
			fmt.Fprintf(&readme, "%-24s NOT COLLECTED: %v\n", p.name, err)
			if werr := add(p.name+".error.txt", []byte(err.Error()+"\n")); werr != nil {
				return nil, fmt.Errorf("node diags: write %s: %w", path, werr)
			}
			continue
		}
		fmt.Fprintf(&readme, "%-24s %d bytes\n", p.name, len(data))
		if err := add(p.name, data); err != nil {
			return nil, fmt.Errorf("node diags: write %s: %w", path, err)
		}
	}
	if err := add("README.txt", []byte(readme.String())); err != nil {
		return nil, fmt.Errorf("node diags: write %s: %w", path, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("node diags: write %s: %w", path, err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("node diags: write %s: %w", path, err)
	}
	return failed, f.Close()
}

// agentLogs reads the given log files, else the default ones, else the
// systemd journal of tabby-agent.
func agentLogs(ctx context.Context, files []string) ([]byte, error) {
	explicit := len(files) > 0
	if !explicit {
		files = DefaultAgentLogs
	}
	var out []byte
	var errs []string
	for _, p := range files {
		b, err := readTail(p, 32<<20)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out = append(out, b...)
	}
	if len(out) > 0 || explicit {
		if len(out) == 0 {
			return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return out, nil
	}
	b, err := runTool(ctx, "journalctl", "-u", "tabby-agent", "--no-pager", "-n", "20000")
	if err != nil {
		return nil, fmt.Errorf("no agent log found (tried %s and journalctl -u tabby-agent: %v); pass --agent-log FILE", strings.Join(DefaultAgentLogs, ", "), err)
	}
	return b, nil
}

// readTail reads at most the last max bytes of a file.
func readTail(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > max {
		if _, err := f.Seek(-max, io.SeekEnd); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(f)
}

func runTool(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("%s %s: %v %s", name, strings.Join(args, " "), err, stderr)
	}
	return out, nil
}

func httpGet(ctx context.Context, addr, path string, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + addr + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the agent at %s (is it running, with --http-listen %s?): %w", addr, addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return b, nil
}
