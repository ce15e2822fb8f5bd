package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/internal/agent/routing/router"
	"github.com/tabbynet/tabby/internal/api"
)

// agentAddr is the HOST:PORT of a node's agent HTTP API: its BGP IPv4
// address (what the lab and `tabby node status` use), else its first
// address, on the agent port. "" when the node has no address.
func (s *Server) agentAddr(n *api.Node) string {
	var cands []string
	if b := n.Spec.BGP; b != nil {
		cands = append(cands, b.IPv4Address, b.IPv6Address)
	}
	for _, a := range n.Spec.Addresses {
		cands = append(cands, a.Address)
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if p, err := netip.ParsePrefix(c); err == nil {
			return net.JoinHostPort(p.Addr().String(), strconv.Itoa(s.cfg.AgentPort))
		}
		if a, err := netip.ParseAddr(c); err == nil {
			return net.JoinHostPort(a.String(), strconv.Itoa(s.cfg.AgentPort))
		}
	}
	return ""
}

// agentGet GETs path (with query) from a node's agent; the caller closes
// the body. A status other than 200 is an error quoting the answer.
func (s *Server) agentGet(ctx context.Context, n *api.Node, path string, q url.Values) (*http.Response, error) {
	addr := s.agentAddr(n)
	if addr == "" {
		return nil, fmt.Errorf("node %s: no address to reach its agent on", n.Name)
	}
	u := "http://" + addr + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.cfg.AgentClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("node %s: GET %s: %s: %s", n.Name, u, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// nodeView is a node with its agent's routing status.
type nodeView struct {
	Node      *api.Node
	Agent     string // the agent's HTTP address
	Status    *router.Status
	Error     string // why the status could not be read
	Endpoints int
}

// ASN is the node's AS number, or "(default)".
func (n *nodeView) ASN() string {
	if n.Status != nil && n.Status.BGP != nil {
		return strconv.FormatUint(uint64(n.Status.BGP.ASN), 10)
	}
	if b := n.Node.Spec.BGP; b != nil && b.ASNumber != nil {
		return fmt.Sprint(*b.ASNumber)
	}
	return "(default)"
}

// Address is the node's BGP address.
func (n *nodeView) Address() string {
	if b := n.Node.Spec.BGP; b != nil {
		return strings.Join(nonEmpty(b.IPv4Address, b.IPv6Address), ", ")
	}
	return ""
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// agentConcurrency bounds the agents asked at once for one page.
const agentConcurrency = 32

// nodeViews asks every node's agent for its BGP sessions, agentConcurrency
// at a time.
func (s *Server) nodeViews(ctx context.Context, nodes []*api.Node) []*nodeView {
	out := make([]*nodeView, len(nodes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, agentConcurrency)
	for i, n := range nodes {
		out[i] = &nodeView{Node: n, Agent: s.agentAddr(n)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			st, err := s.routingStatus(ctx, n)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Status = st
		}()
	}
	wg.Wait()
	return out
}

func (s *Server) routingStatus(ctx context.Context, n *api.Node) (*router.Status, error) {
	resp, err := s.agentGet(ctx, n, router.StatusPath, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st router.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("node %s: decode %s: %w", n.Name, router.StatusPath, err)
	}
	return &st, nil
}
