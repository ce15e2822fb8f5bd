package console

import (
	"context"
	"fmt"
	"math/big"
	"net/http"
	"strconv"

	"github.com/tabbynet/tabby/internal/ipam"
)

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
