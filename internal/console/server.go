package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/lab"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// DefaultAgentPort is the port of the agents' HTTP API (agent.DefaultHTTPListen).
const DefaultAgentPort = 9099

// Config is what a console reads from.
type Config struct {
	// Store is the datastore (required).
	Store datastore.Store
	// AgentPort is the port of each node's agent HTTP API, reached on the
	// node's address (default DefaultAgentPort).
	AgentPort int
	// AgentClient reaches the agents (default: a client with a 5 s
	// timeout). A lab's console dials from inside the lab.
	AgentClient *http.Client
	// Matrix probes a lab's reachability matrix (nil: not a lab; the
	// matrix page says so).
	Matrix func(ctx context.Context, spec lab.ProbeSpec) (*lab.Reachability, error)
	// Title names the cluster in every page's header (default "Tabby").
	Title string
	// Logger logs failures to read (default: discard).
	Logger *slog.Logger
}

// WithDefaults fills in the defaults.
func (c Config) WithDefaults() Config {
	if c.AgentPort == 0 {
		c.AgentPort = DefaultAgentPort
	}
	if c.AgentClient == nil {
		c.AgentClient = &http.Client{Timeout: 5 * time.Second}
	}
	if c.Title == "" {
		c.Title = "Tabby"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks a config (with defaults applied).
func (c Config) Validate() error {
	if c.Store == nil {
		return errors.New("console: no datastore")
	}
	if c.AgentPort < 1 || c.AgentPort > 65535 {
		return fmt.Errorf("console: agent port %d: want 1-65535", c.AgentPort)
	}
	return nil
}

// Server serves the console's pages.
type Server struct {
	cfg    Config
	client *datastore.Client
	pages  map[string]*template.Template
	log    *slog.Logger
	// probing is held while the matrix is probed: one probe at a time,
	// however many pages load it (each pair starts listeners).
	probing chan struct{}
}

// pageNames are the pages; each is templates/NAME.html in templates/layout.html.
var pageNames = []string{"overview", "nodes", "endpoints", "policies", "policy", "ipam", "flows", "matrix"}

// navPages are the pages the header links to.
var navPages = []string{"overview", "nodes", "endpoints", "policies", "ipam", "flows", "matrix"}

// New makes a console; it starts nothing.
func New(cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, client: datastore.NewClient(cfg.Store), pages: map[string]*template.Template{},
		log: cfg.Logger.With("component", "console"), probing: make(chan struct{}, 1)}
	for _, p := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", p, err)
		}
		s.pages[p] = t
	}
	return s, nil
}

// Handler routes the console's pages.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/overview", http.StatusFound) })
	mux.HandleFunc("GET /overview", s.overviewPage)
	mux.HandleFunc("GET /nodes", s.nodesPage)
	mux.HandleFunc("GET /endpoints", s.endpointsPage)
	mux.HandleFunc("GET /policies", s.policiesPage)
	mux.HandleFunc("GET /policy", s.policyPage)
	mux.HandleFunc("GET /ipam", s.ipamPage)
	mux.HandleFunc("GET /flows", s.flowsPage)
	mux.HandleFunc("GET /flows/rows", s.flowRows)
	mux.HandleFunc("GET /matrix", s.matrixPage)
	return mux
}

// Run serves on ln until ctx ends.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// page is what every template gets.
type page struct {
	Title  string
	Active string
	Now    time.Time
	// Errors are what could not be read (shown above the content).
	Errors []string
	Data   any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, data any, errs []error) {
	s.renderStatus(w, r, http.StatusOK, name, data, errs)
}

// renderStatus renders page name with an HTTP status: 400 for bad input,
// 404 for what does not exist, 503 when the datastore could not be read.
func (s *Server) renderStatus(w http.ResponseWriter, r *http.Request, code int, name string, data any, errs []error) {
	p := page{Title: s.cfg.Title, Active: name, Now: time.Now(), Data: data}
	for _, e := range errs {
		if e != nil {
			p.Errors = append(p.Errors, e.Error())
			s.log.Warn("read for a page", "page", name, "error", e)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := s.pages[name].Execute(w, p); err != nil {
		s.log.Error("render", "page", name, "error", err)
	}
}

var funcs = template.FuncMap{
	"labels": func(m map[string]string) []string { return sortedLabels(m) },
	"join":   strings.Join,
	"nav":    func() []string { return navPages },
	"list":   func(s ...string) []string { return s },
	"pct": func(part, total float64) string {
		if total == 0 {
			return "0%"
		}
		return strconv.FormatFloat(100*part/total, 'f', 0, 64) + "%"
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return time.Since(t).Round(time.Second).String()
	},
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("15:04:05")
	},
}
