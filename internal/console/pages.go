package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/lab"
)

// readTimeout bounds the reads of one page.
const readTimeout = 10 * time.Second

func urlQuery(s string) string { return url.QueryEscape(s) }

func (s *Server) nodesPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	c, err := s.readCluster(ctx)
	if err != nil {
		s.renderStatus(w, r, http.StatusServiceUnavailable, "nodes", nil, []error{err})
		return
	}
	views := s.nodeViews(ctx, c.Nodes)
	for _, v := range views {
		for _, e := range c.Endpoints {
			if e.Node == v.Node.Name {
				v.Endpoints++
			}
		}
	}
	s.render(w, r, "nodes", views, nil)
}

func (s *Server) endpointsPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	c, err := s.readCluster(ctx)
	if err != nil {
		s.renderStatus(w, r, http.StatusServiceUnavailable, "endpoints", nil, []error{err})
		return
	}
	s.render(w, r, "endpoints", c.Endpoints, nil)
}

func (s *Server) policiesPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	c, err := s.readCluster(ctx)
	if err != nil {
		s.renderStatus(w, r, http.StatusServiceUnavailable, "policies", nil, []error{err})
		return
	}
	s.render(w, r, "policies", c, nil)
}

// profileView is a profile with the endpoints that use it.
type profileView struct {
	Profile   *api.Profile
	Endpoints []*endpointView
}

// policyPageData is one policy (or profile) and what it selects.
type policyPageData struct {
	Kind, Namespace, Name string
	Policy                *policyView
	Profile               *profileView
}

func (s *Server) policyPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := policyPageData{Kind: q.Get("kind"), Namespace: q.Get("namespace"), Name: q.Get("name")}
	if d.Kind == "" {
		d.Kind = "NetworkPolicy"
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	c, err := s.readCluster(ctx)
	if err != nil {
		s.renderStatus(w, r, http.StatusServiceUnavailable, "policy", d, []error{err})
		return
	}
	switch d.Kind {
	case "NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy", "StagedGlobalNetworkPolicy", "StagedKubernetesNetworkPolicy":
		d.Policy = c.policy(d.Kind, d.Namespace, d.Name)
	case "Profile":
		for _, p := range c.Profiles {
			if p.Name == d.Name {
				d.Profile = &profileView{Profile: p}
				for _, e := range c.Endpoints {
					if slices.Contains(e.Profiles, p.Name) {
						d.Profile.Endpoints = append(d.Profile.Endpoints, e)
					}
				}
			}
		}
	default:
		s.renderStatus(w, r, http.StatusBadRequest, "policy", d, []error{fmt.Errorf("kind: %q is not NetworkPolicy, GlobalNetworkPolicy, a staged kind or Profile", d.Kind)})
		return
	}
	if d.Policy == nil && d.Profile == nil {
		s.renderStatus(w, r, http.StatusNotFound, "policy", d, []error{fmt.Errorf("%s %s does not exist (any more)", d.Kind, strings.TrimPrefix(d.Namespace+"/"+d.Name, "/"))})
		return
	}
	s.render(w, r, "policy", d, nil)
}

// poolView is a pool's use, ready to print.
type poolView struct {
	Name, CIDR, Encap                 string
	Disabled                          bool
	Total, InUse, Reserved, Free, Pct string
	Blocks                            []blockView
}

type blockView struct {
	CIDR, Node                  string
	Size, InUse, Reserved, Free int
	Pct                         string
}

func (s *Server) ipamPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	u, err := ipam.New(s.cfg.Store, s.log).Usage(ctx)
	if err != nil {
		s.renderStatus(w, r, http.StatusServiceUnavailable, "ipam", nil, []error{fmt.Errorf("read IPAM: %w", err)})
		return
	}
	var pools []poolView
	for _, p := range u.Pools {
		free := new(big.Int).Sub(p.Total, big.NewInt(int64(p.InUse)))
		free.Sub(free, p.Reserved)
		pv := poolView{CIDR: p.CIDR.String(), Total: p.Total.String(), InUse: strconv.Itoa(p.InUse),
			Reserved: p.Reserved.String(), Free: free.String(), Pct: percent(big.NewInt(int64(p.InUse)), p.Total)}
		if p.Pool != nil {
			pv.Name, pv.Disabled = p.Pool.Name, p.Pool.Spec.Disabled
			pv.Encap = encapText(p.Pool)
		}
		for _, b := range p.Blocks {
			pv.Blocks = append(pv.Blocks, newBlockView(b))
		}
		pools = append(pools, pv)
	}
	var orphans []blockView
	for _, b := range u.Orphans {
		orphans = append(orphans, newBlockView(b))
	}
	s.render(w, r, "ipam", struct {
		Pools   []poolView
		Orphans []blockView
	}{pools, orphans}, nil)
}

func newBlockView(b ipam.BlockInfo) blockView {
	return blockView{CIDR: b.CIDR.String(), Node: cmp.Or(b.Node, "(none)"), Size: b.Size, InUse: b.InUse, Reserved: b.Reserved,
		Free: b.Size - b.InUse - b.Reserved, Pct: percent(big.NewInt(int64(b.InUse)), big.NewInt(int64(b.Size)))}
}

func encapText(p *api.IPPool) string {
	var parts []string
	if m := p.Spec.IPIPMode; m != "" && m != api.EncapNever {
		parts = append(parts, "IPIP "+m)
	}
	if m := p.Spec.VXLANMode; m != "" && m != api.EncapNever {
		parts = append(parts, "VXLAN "+m)
	}
	if len(parts) == 0 {
		return "none (native)"
	}
	return strings.Join(parts, ", ")
}

// percent is part/total as a whole percentage, as `tabby ipam show` prints it.
func percent(part, total *big.Int) string {
	if total.Sign() == 0 {
		return "0%"
	}
	q := new(big.Rat).SetFrac(new(big.Int).Mul(part, big.NewInt(100)), total)
	f, _ := q.Float64()
	return fmt.Sprintf("%.0f%%", f)
}

// flowsPageData is the flows page: its filter and rows.
type flowsPageData struct {
	Filter flowFilter
	Query  string
	Nodes  []string
	Flows  []flowView
}

func (s *Server) readFlowsPage(r *http.Request) (flowsPageData, []error) {
	var d flowsPageData
	f, err := parseFlowFilter(r.URL.Query(), time.Now())
	d.Filter = f
	if err != nil {
		return d, []error{fmt.Errorf("%w: %v", errBadFilter, err)}
	}
	d.Query = r.URL.RawQuery
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	rs, _, err := s.client.List(ctx, "Node", "")
	if err != nil {
		return d, []error{fmt.Errorf("list Node: %w", err)}
	}
	var nodes []*api.Node
	for _, x := range rs {
		n := x.(*api.Node)
		nodes = append(nodes, n)
		d.Nodes = append(d.Nodes, n.Name)
	}
	slices.Sort(d.Nodes)
	flows, errs := s.readFlows(ctx, nodes, f)
	for _, fl := range flows {
		d.Flows = append(d.Flows, flowView{fl})
	}
	return d, errs
}

func (s *Server) flowsPage(w http.ResponseWriter, r *http.Request) {
	d, errs := s.readFlowsPage(r)
	code := http.StatusOK
	switch {
	case len(errs) == 0:
	case errors.Is(errs[0], errBadFilter):
		code = http.StatusBadRequest
	case errors.Is(errs[0], datastore.ErrUnavailable):
		code = http.StatusServiceUnavailable
	}
	s.renderStatus(w, r, code, "flows", d, errs)
}

var errBadFilter = errors.New("bad filter")

// flowRows is the rows of the flows table alone, for the page's script.
func (s *Server) flowRows(w http.ResponseWriter, r *http.Request) {
	d, errs := s.readFlowsPage(r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	p := page{Data: d}
	for _, e := range errs {
		p.Errors = append(p.Errors, e.Error())
	}
	if err := s.pages["flows"].ExecuteTemplate(w, "rows", p); err != nil {
		s.log.Error("render flow rows", "error", err)
	}
}

// matrixPageData is the reachability matrix of a lab.
type matrixPageData struct {
	InLab  bool
	Proto  string
	Port   int
	Family int
	Result *lab.Reachability
	Rows   []matrixRow
	Took   string
}

type matrixRow struct {
	From  string
	Cells []matrixCell
}

type matrixCell struct {
	Mark, Class, Title string
	// Link is the flows between the pair (when both are endpoints).
	Link string
}

// matrixTimeout bounds one probe of the matrix page.
const matrixTimeout = 60 * time.Second

func (s *Server) matrixPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := matrixPageData{InLab: s.cfg.Matrix != nil, Proto: cmp.Or(q.Get("proto"), lab.ProbeTCP), Port: 80, Family: 4}
	if f := q.Get("family"); f != "" {
		n, err := strconv.Atoi(f)
		if err != nil || n != 4 && n != 6 {
			s.renderStatus(w, r, http.StatusBadRequest, "matrix", d, []error{fmt.Errorf("family: %q is not 4 or 6", f)})
			return
		}
		d.Family = n
	}
	if p := q.Get("port"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			s.renderStatus(w, r, http.StatusBadRequest, "matrix", d, []error{fmt.Errorf("port: %q is not a number", p)})
			return
		}
		d.Port = n
	}
	if !d.InLab {
		s.render(w, r, "matrix", d, nil)
		return
	}
	spec := lab.ProbeSpec{Protocol: d.Proto, Port: d.Port, Family: d.Family}
	if d.Proto == lab.ProbeICMP {
		spec.Port, d.Port = 0, 0
	}
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		s.renderStatus(w, r, http.StatusBadRequest, "matrix", d, []error{err})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), matrixTimeout)
	defer cancel()
	select {
	case s.probing <- struct{}{}:
	case <-ctx.Done():
		s.render(w, r, "matrix", d, []error{errors.New("probe: another probe of the matrix took too long; try again")})
		return
	}
	t0 := time.Now()
	res, err := s.cfg.Matrix(ctx, spec)
	<-s.probing
	if err != nil {
		s.render(w, r, "matrix", d, []error{fmt.Errorf("probe: %w", err)})
		return
	}
	d.Result, d.Took = res, time.Since(t0).Round(time.Millisecond).String()
	eps := s.containerEndpoints(ctx, res)
	for _, from := range res.From {
		row := matrixRow{From: from}
		for _, to := range res.To {
			c := matrixCell{Mark: res.Cell(from, to)}
			p, _ := res.Get(from, to)
			switch c.Mark {
			case ".":
				c.Class, c.Title = "allow", from+" → "+to+": allowed ("+p.Detail+")"
			case "X":
				c.Class, c.Title = "deny", from+" → "+to+": denied ("+p.Detail+")"
			case "?":
				c.Class, c.Title = "unknown", from+" → "+to+": not probed "+p.Error
			default:
				c.Class = "self"
			}
			if src, dst := eps[from], eps[to]; src != nil && dst != nil && c.Class != "self" {
				q := url.Values{"src": {src.Namespace + "/" + src.Name}, "dst": {dst.Namespace + "/" + dst.Name}, "since": {"15m"}}
				if c.Class == "deny" {
					q.Set("action", "deny")
				}
				c.Link = "/flows?" + q.Encode()
			}
			row.Cells = append(row.Cells, c)
		}
		d.Rows = append(d.Rows, row)
	}
	s.render(w, r, "matrix", d, nil)
}

// containerEndpoints maps the probed containers to their endpoints, by
// the addresses the probe used (nil map when the datastore cannot say).
func (s *Server) containerEndpoints(ctx context.Context, res *lab.Reachability) map[string]*endpointView {
	c, err := s.readCluster(ctx)
	if err != nil {
		s.log.Warn("read endpoints for the matrix", "error", err)
		return nil
	}
	byAddr := map[netip.Addr]*endpointView{}
	for _, e := range c.Endpoints {
		for _, a := range e.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil {
				byAddr[p.Addr()] = e
			} else if ip, err := netip.ParseAddr(a); err == nil {
				byAddr[ip] = e
			}
		}
	}
	out := map[string]*endpointView{}
	for _, p := range res.Results {
		a, err := netip.ParseAddr(p.Address)
		if ap, perr := netip.ParseAddrPort(p.Address); perr == nil {
			a, err = ap.Addr(), nil
		}
		if err == nil && byAddr[a] != nil {
			out[p.To] = byAddr[a]
		}
	}
	return out
}

// overview is the summary page: how many of each, and what needs a look.
type overview struct {
	Nodes, Agents, Sessions, SessionsUp int
	Problems                            []string
	Endpoints, HostEndpoints            int
	Tiers                               []tierCount
	Staged                              int
	Pools                               []poolView
}

type tierCount struct {
	Name     string
	Policies int
}

func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	c, err := s.readCluster(ctx)
	if err != nil {
		s.renderStatus(w, r, http.StatusServiceUnavailable, "overview", nil, []error{err})
		return
	}
	o := overview{Nodes: len(c.Nodes)}
	for _, v := range s.nodeViews(ctx, c.Nodes) {
		if v.Status == nil {
			o.Problems = append(o.Problems, v.Error)
			continue
		}
		o.Agents++
		for _, p := range v.Status.Peers {
			o.Sessions++
			if p.State == "up" {
				o.SessionsUp++
			}
		}
		for _, p := range v.Status.Problems {
			o.Problems = append(o.Problems, v.Node.Name+": "+p)
		}
	}
	for _, e := range c.Endpoints {
		if e.Kind == "HostEndpoint" {
			o.HostEndpoints++
		} else {
			o.Endpoints++
		}
	}
	for _, t := range c.Tiers {
		n := 0
		for _, p := range t.Policies {
			if p.Staged {
				o.Staged++
			} else {
				n++
			}
		}
		o.Tiers = append(o.Tiers, tierCount{t.Name, n})
	}
	var errs []error
	if u, err := ipam.New(s.cfg.Store, s.log).Usage(ctx); err != nil {
		errs = append(errs, fmt.Errorf("read IPAM: %w", err))
	} else {
		for _, p := range u.Pools {
			pv := poolView{CIDR: p.CIDR.String(), Total: p.Total.String(), InUse: strconv.Itoa(p.InUse), Pct: percent(big.NewInt(int64(p.InUse)), p.Total)}
			if p.Pool != nil {
				pv.Name = p.Pool.Name
			}
			o.Pools = append(o.Pools, pv)
		}
	}
	s.render(w, r, "overview", o, errs)
}
