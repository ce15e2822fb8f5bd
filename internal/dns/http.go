package dns

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tabbynet/tabby/internal/dns/records"
)

// httpHandler serves Mesos-DNS's HTTP API (same paths and JSON shapes) and
// the Prometheus metrics.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/version", s.restVersion)
	mux.HandleFunc("GET /v1/config", s.restConfig)
	mux.HandleFunc("GET /v1/hosts/{host}", s.restHost)
	mux.HandleFunc("GET /v1/hosts/{host}/ports", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "To be implemented...", http.StatusNotImplemented) // as Mesos-DNS
	})
	mux.HandleFunc("GET /v1/services/{service}", s.restService)
	if s.cfg.EnumerationOn {
		mux.HandleFunc("GET /v1/enumerate", s.restEnumerate)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) restVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]string{
		"Service": "Tabby DNS (Mesos-DNS compatible)",
		"Version": s.version,
		"URL":     "https://github.com/tabbynet/tabby",
	})
}

func (s *Server) restConfig(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.cfg) }

func (s *Server) restEnumerate(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, struct {
		Frameworks []records.EnumFramework `json:"frameworks"`
	}{s.snap.Load().set.Frameworks})
}

// fqdn cleans a name from a URL path as Mesos-DNS does: wildcards ".*"
// dropped, lower case, trailing dot.
func fqdn(name string) string {
	name = strings.ToLower(strings.ReplaceAll(name, ".*", ""))
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

func (s *Server) restHost(w http.ResponseWriter, r *http.Request) {
	type record struct {
		Host string `json:"host"`
		IP   string `json:"ip"`
	}
	name := fqdn(r.PathValue("host"))
	out := []record{}
	if rr := s.snap.Load().set.Names[name]; rr != nil {
		for _, ip := range slices.Concat(rr.A, rr.AAAA) {
			out = append(out, record{name, ip.String()})
		}
	}
	if len(out) == 0 {
		out = append(out, record{}) // Mesos-DNS answers one empty record
	}
	writeJSON(w, out)
}

func (s *Server) restService(w http.ResponseWriter, r *http.Request) {
	type record struct {
		Service string `json:"service"`
		Host    string `json:"host"`
		IP      string `json:"ip"`
		Port    string `json:"port"`
	}
	service := r.PathValue("service")
	names := s.snap.Load().set.Names
	out := []record{}
	if rr := names[fqdn(service)]; rr != nil {
		for _, srv := range rr.SRV {
			t := names[srv.Target]
			if t == nil {
				continue
			}
			port := strconv.Itoa(int(srv.Port))
			if len(t.A) > 0 {
				out = append(out, record{service, srv.Target, t.A[0].String(), port})
			}
			if len(t.AAAA) > 0 {
				out = append(out, record{service, srv.Target, t.AAAA[0].String(), port})
			}
		}
	}
	if len(out) == 0 {
		out = append(out, record{})
	}
	writeJSON(w, out)
}
