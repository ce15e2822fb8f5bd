package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/agent/routing/router"
)

func init() { nodeSubcommands = append(nodeSubcommands, newNodeStatusCommand) }

func newNodeStatusCommand(g *globals) *cobra.Command {
	var addr, out string
	cmd := &cobra.Command{
		Use:   "status [--agent-http ADDR] [-o json]",
		Short: "Show this node's BGP sessions and routing state (run on the node)",
		Long: "Asks the local agent (its HTTP address, default " + agent.DefaultHTTPListen + ") for its BGP sessions\n" +
			"and prints them as calicoctl node status does. Exits 1 when the agent is not running.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out != "" && out != "table" && out != "json" {
				return fmt.Errorf("--output: %q is not table or json", out)
			}
			addrs := []string{addr}
			if !cmd.Flags().Changed("agent-http") {
				addrs = append(addrs, localAgentAddrs()...)
			}
			st, raw, err := fetchFirstStatus(cmd.Context(), addrs, g.timeout)
			if err != nil {
				if out == "json" {
					return exitError{code: 1, msg: err.Error()}
				}
				fmt.Fprintln(g.stdout, "Tabby process is not running.")
				return exitError{code: 1, msg: err.Error()}
			}
			if out == "json" {
				_, err := g.stdout.Write(raw)
				return err
			}
			writeNodeStatus(g.stdout, st, time.Now())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "agent-http", agent.DefaultHTTPListen, "the agent's HTTP address (its --http-listen); when not given, port "+agentHTTPPort+" on this host's addresses is tried too")
	f.StringVarP(&out, "output", "o", "table", "table or json")
	return cmd
}

// agentHTTPPort is the port of agent.DefaultHTTPListen.
var agentHTTPPort = func() string {
	_, p, _ := net.SplitHostPort(agent.DefaultHTTPListen)
	return p
}()

// localAgentAddrs are the default port on this host's IPv4 addresses: an
// agent told to listen on its node IP (as in a lab) is found there.
func localAgentAddrs() []string {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range ifas {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.To4() == nil {
			continue
		}
		out = append(out, net.JoinHostPort(n.IP.String(), agentHTTPPort))
	}
	return out
}

// fetchFirstStatus asks each address in turn; the first agent that
// answers wins. The error is the first address's.
func fetchFirstStatus(ctx context.Context, addrs []string, timeout time.Duration) (*router.Status, []byte, error) {
	var first error
	for i, a := range addrs {
		t := timeout
		if i > 0 {
			t = min(timeout, 2*time.Second)
		}
		st, raw, err := fetchRoutingStatus(ctx, a, t)
		if err == nil {
			return st, raw, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, nil, first
}

// fetchRoutingStatus reads the router's status from the agent.
func fetchRoutingStatus(ctx context.Context, addr string, timeout time.Duration) (*router.Status, []byte, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + addr + router.StatusPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("--agent-http %q: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach the agent at %s (is `tabby agent` running, with --http-listen %s?): %w", addr, addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil, fmt.Errorf("the agent at %s serves no routing status (started with --disable-routing?)", addr)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(raw)))
	}
	var st router.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", url, err)
	}
	return &st, raw, nil
}

// writeNodeStatus prints the status in calicoctl's layout.
func writeNodeStatus(w io.Writer, st *router.Status, now time.Time) {
	fmt.Fprintln(w, "Tabby process is running.")
	if st.BGP == nil {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "BGP is not running on this node (no IPv4 address, or BGP is disabled).")
	} else {
		for _, fam := range []struct {
			name string
			is4  bool
		}{{"IPv4", true}, {"IPv6", false}} {
			var rows [][]string
			withBFD := false
			for _, p := range st.Peers {
				a, err := netip.ParseAddr(p.Address)
				if err != nil || a.Is4() != fam.is4 {
					continue
				}
				withBFD = withBFD || p.BFD != ""
				rows = append(rows, []string{p.Address, p.Type, p.State, since(p.Since, now), p.Info, bfdColumn(p.BFD)})
			}
			fmt.Fprintf(w, "\n%s BGP status\n", fam.name)
			if len(rows) == 0 {
				fmt.Fprintf(w, "No %s peers found.\n", fam.name)
				continue
			}
			header := []string{"PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO", "BFD"}
			if !withBFD {
				// calicoctl's layout, when no session runs BFD.
				header = header[:5]
				for i := range rows {
					rows[i] = rows[i][:5]
				}
			}
			writeBoxTable(w, header, rows)
		}
	}
	if len(st.Problems) > 0 {
		fmt.Fprintln(w, "\nProblems:")
		for _, p := range st.Problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
	if st.LastError != "" {
		fmt.Fprintln(w, "\nLast error: "+st.LastError)
	}
}

// since is the time of day for today, the date otherwise (as BIRD shows it).
// bfdColumn is the BFD column of a session: its BFD state, or "-" when
// the session runs no BFD.
func bfdColumn(state string) string {
	if state == "" {
		return "-"
	}
	return state
}

func since(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02")
}

// writeBoxTable draws a table with +---+ borders and centred headers.
func writeBoxTable(w io.Writer, header []string, rows [][]string) {
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len(h)
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	line := func() {
		for _, n := range width {
			fmt.Fprint(w, "+"+strings.Repeat("-", n+2))
		}
		fmt.Fprintln(w, "+")
	}
	line()
	for i, h := range header {
		pad := width[i] - len(h)
		fmt.Fprintf(w, "| %s%s%s ", strings.Repeat(" ", pad/2), h, strings.Repeat(" ", pad-pad/2))
	}
	fmt.Fprintln(w, "|")
	line()
	for _, r := range rows {
		for i, c := range r {
			fmt.Fprintf(w, "| %-*s ", width[i], c)
		}
		fmt.Fprintln(w, "|")
	}
	line()
}
