package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

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
