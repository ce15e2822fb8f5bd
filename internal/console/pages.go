package console

import (
	"cmp"
	"context"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/api/selector"
	"github.com/tabbynet/tabby/internal/ipam"
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

// endpointsPageData is the endpoints page: its filter and the endpoints
// that pass it.
type endpointsPageData struct {
	Namespace, Node, Selector string
	Endpoints                 []*endpointView
	Total                     int
}

func (s *Server) endpointsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := endpointsPageData{Namespace: q.Get("namespace"), Node: q.Get("node"), Selector: q.Get("selector")}
	var sel *selector.Selector
	if d.Selector != "" {
		var err error
		if sel, err = selector.Parse(d.Selector); err != nil {
			s.renderStatus(w, r, http.StatusBadRequest, "endpoints", d, []error{fmt.Errorf("selector: %q: %w", d.Selector, err)})
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	c, err := s.readCluster(ctx)
	if err != nil {
		s.renderStatus(w, r, http.StatusServiceUnavailable, "endpoints", d, []error{err})
		return
	}
	d.Total = len(c.Endpoints)
	for _, e := range c.Endpoints {
		if (d.Namespace == "" || e.Namespace == d.Namespace) && (d.Node == "" || e.Node == d.Node) && (sel == nil || sel.Evaluate(e.Labels)) {
			d.Endpoints = append(d.Endpoints, e)
		}
	}
	s.render(w, r, "endpoints", d, nil)
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
