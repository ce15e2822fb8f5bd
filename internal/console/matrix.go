package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/tabbynet/tabby/internal/lab"
)

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
