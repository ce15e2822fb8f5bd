package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
)

// ProbeSpec says what `tabby lab probe` tries between the lab's
// containers.
type ProbeSpec struct {
	// Protocol is tcp (default), udp or icmp.
	Protocol string
	// Port is the destination port (default 80; not for icmp).
	Port int
	// From and To name the source and destination containers (default:
	// every running container).
	From, To []string
	// Timeout bounds each probe (default DefaultProbeTimeout): a denied
	// pair costs this long.
	Timeout time.Duration
	// Concurrency bounds the probes in flight (default
	// DefaultProbeConcurrency).
	Concurrency int
	// Family is the address family probed: 4 (default) or 6, the
	// containers' IPv6 addresses (ipv6 and dual labs).
	Family int
}

// addrOf is the address of c that a probe of family fam uses.
func addrOf(c Container, fam int) netip.Addr {
	if fam == 6 {
		return c.IP6()
	}
	return c.IP()
}

// DefaultProbeConcurrency is how many pairs a probe tries at once.
const DefaultProbeConcurrency = 64

// WithDefaults fills in the defaults.
func (s ProbeSpec) WithDefaults() ProbeSpec {
	if s.Protocol == "" {
		s.Protocol = ProbeTCP
	}
	s.Protocol = strings.ToLower(s.Protocol)
	if s.Port == 0 && s.Protocol != ProbeICMP {
		s.Port = 80
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultProbeTimeout
	}
	if s.Concurrency == 0 {
		s.Concurrency = DefaultProbeConcurrency
	}
	if s.Family == 0 {
		s.Family = 4
	}
	return s
}

// Validate checks a spec (with defaults applied); errors name the field.
func (s ProbeSpec) Validate() error {
	var errs []error
	switch s.Protocol {
	case ProbeTCP, ProbeUDP:
		if s.Port < 1 || s.Port > 65535 {
			errs = append(errs, fmt.Errorf("port %d: want 1-65535", s.Port))
		}
	case ProbeICMP:
		if s.Port != 0 {
			errs = append(errs, fmt.Errorf("port %d: icmp has no ports", s.Port))
		}
	default:
		errs = append(errs, fmt.Errorf("protocol %q: want tcp, udp or icmp", s.Protocol))
	}
	if s.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s: must be positive", s.Timeout))
	}
	if s.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: want at least 1", s.Concurrency))
	}
	if s.Family != 4 && s.Family != 6 {
		errs = append(errs, fmt.Errorf("family %d: want 4 or 6", s.Family))
	}
	return errors.Join(errs...)
}

// Reachability is the who-can-reach-whom matrix of a probe: rows are the
// sources (From), columns the destinations (To). A container is not
// probed against itself (its own address never leaves its namespace).
type Reachability struct {
	Protocol string `json:"protocol"`
	Port     int    `json:"port,omitempty"`
	// Family is 4 or 6: which addresses were probed.
	Family int `json:"family"`
	// From and To are the container names, sorted.
	From []string `json:"from"`
	To   []string `json:"to"`
	// Listeners says, per destination, what answered: "probe" (a listener
	// the probe started for its duration) or "container" (the container's
	// own, when the port was taken); absent for icmp.
	Listeners map[string]string `json:"listeners,omitempty"`
	Results   []PairResult      `json:"results"`
	Took      time.Duration     `json:"-"`
}

// PairResult is one cell of the matrix.
type PairResult struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Address string `json:"address"`
	Allowed bool   `json:"allowed"`
	// Detail is what the probe saw: connected, refused, reply, timeout…
	Detail string `json:"detail,omitempty"`
	// Error is set when the pair could not be probed (no verdict).
	Error string  `json:"error,omitempty"`
	Ms    float64 `json:"ms"`
}

// Get returns the result of one pair.
func (r *Reachability) Get(from, to string) (PairResult, bool) {
	for _, p := range r.Results {
		if p.From == from && p.To == to {
			return p, true
		}
	}
	return PairResult{}, false
}

// Counts are the numbers of allowed, denied and failed pairs.
func (r *Reachability) Counts() (allowed, denied, failed int) {
	for _, p := range r.Results {
		switch {
		case p.Error != "":
			failed++
		case p.Allowed:
			allowed++
		default:
			denied++
		}
	}
	return allowed, denied, failed
}

// Cell is the table mark of a pair: "." allowed, "X" denied, "?" not
// probed (an error), "-" the container itself.
func (r *Reachability) Cell(from, to string) string {
	if from == to {
		return "-"
	}
	p, ok := r.Get(from, to)
	switch {
	case !ok || p.Error != "":
		return "?"
	case p.Allowed:
		return "."
	}
	return "X"
}

// Title names what was probed: "tcp/80", "icmp", "tcp/80 over IPv6".
func (r *Reachability) Title() string {
	t := r.Protocol
	if r.Protocol != ProbeICMP {
		t = fmt.Sprintf("%s/%d", r.Protocol, r.Port)
	}
	if r.Family == 6 {
		t += " over IPv6"
	}
	return t
}

// WriteTable prints the matrix as the Kubernetes network-policy e2e
// tests print reachability: a header of destinations, one row per
// source, "." allowed and "X" denied; then the errors, if any.
func (r *Reachability) WriteTable(w io.Writer) error {
	a, d, f := r.Counts()
	fmt.Fprintf(w, "%s: %d allowed, %d denied", r.Title(), a, d)
	if f > 0 {
		fmt.Fprintf(w, ", %d not probed", f)
	}
	fmt.Fprintf(w, " (rows: from, columns: to; . allowed, X denied, ? not probed)\n")
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprint(tw, "-")
	for _, to := range r.To {
		fmt.Fprint(tw, "\t"+to)
	}
	fmt.Fprintln(tw)
	for _, from := range r.From {
		fmt.Fprint(tw, from)
		for _, to := range r.To {
			fmt.Fprint(tw, "\t"+r.Cell(from, to))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range r.Results {
		if p.Error != "" {
			fmt.Fprintf(w, "%s -> %s: %s\n", p.From, p.To, p.Error)
		}
	}
	return nil
}

// Probe tries every (from, to) pair of the lab's containers with the
// spec's protocol and port and returns the matrix. For tcp and udp it
// starts a listener on the port in each destination container for the
// duration of the probe (a udp one echoes), so the probe works whatever
// the containers run; where the container listens on the tcp port
// itself, its listener answers instead. Pairs run concurrently, at most
// spec.Concurrency at once, each bounded by spec.Timeout.
func (l *Lab) Probe(ctx context.Context, spec ProbeSpec) (*Reachability, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("lab %s: probe: %w", l.st.Name, err)
	}
	cs, err := l.Containers()
	if err != nil {
		return nil, err
	}
	from, err := l.probeSide(cs, spec.From, "from")
	if err != nil {
		return nil, err
	}
	to, err := l.probeSide(cs, spec.To, "to")
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	r := &Reachability{Protocol: spec.Protocol, Port: spec.Port, Family: spec.Family}
	for _, c := range from {
		r.From = append(r.From, c.Name)
	}
	for _, c := range to {
		r.To = append(r.To, c.Name)
	}
	// Listeners in the destinations.
	listenErr := map[string]string{}
	if spec.Protocol != ProbeICMP {
		r.Listeners = map[string]string{}
		for _, c := range to {
			ip := addrOf(c, spec.Family)
			if !ip.IsValid() {
				listenErr[c.Name] = fmt.Sprintf("the container has no IPv%d address", spec.Family)
				continue
			}
			ln, err := ListenProbe(c.NetNS, spec.Protocol, netip.AddrPortFrom(ip, uint16(spec.Port)))
			switch {
			case err == nil:
				r.Listeners[c.Name] = "probe"
				defer ln.Close()
			case errors.Is(err, syscall.EADDRINUSE) && spec.Protocol == ProbeTCP:
				r.Listeners[c.Name] = "container"
			case errors.Is(err, syscall.EADDRINUSE):
				listenErr[c.Name] = fmt.Sprintf("port %d/%s is taken in the container: the probe cannot start its echo listener there", spec.Port, spec.Protocol)
			default:
				listenErr[c.Name] = err.Error()
			}
		}
	}
	// The pairs: every result is in place before any probe starts.
	type job struct {
		i        int
		src      Container
		addr     netip.AddrPort
		runnable bool
	}
	var jobs []job
	for _, src := range from {
		for _, dst := range to {
			if src.Name == dst.Name {
				continue
			}
			j := job{i: len(r.Results), src: src, addr: netip.AddrPortFrom(addrOf(dst, spec.Family), uint16(spec.Port))}
			res := PairResult{From: src.Name, To: dst.Name, Address: j.addr.String()}
			if spec.Protocol == ProbeICMP {
				res.Address = j.addr.Addr().String()
			}
			switch e, ok := listenErr[dst.Name]; {
			case ok:
				res.Error = e
			case !j.addr.Addr().IsValid():
				res.Error = fmt.Sprintf("the container has no IPv%d address", spec.Family)
			case !addrOf(src, spec.Family).IsValid():
				res.Error = fmt.Sprintf("the source container has no IPv%d address", spec.Family)
			default:
				j.runnable = true
			}
			r.Results = append(r.Results, res)
			jobs = append(jobs, j)
		}
	}
	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, spec.Concurrency)
	)
	for _, j := range jobs {
		if !j.runnable {
			continue
		}
		res := &r.Results[j.i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				res.Error = ctx.Err().Error()
				return
			}
			defer func() { <-sem }()
			o := ProbeOnce(ctx, ProbeTarget{NS: j.src.NetNS, Protocol: spec.Protocol, Dst: j.addr, Timeout: spec.Timeout})
			res.Allowed, res.Detail, res.Ms = o.Allowed, o.Detail, float64(o.RTT.Microseconds())/1000
			if o.Err != nil {
				res.Allowed, res.Error = false, o.Err.Error()
			}
		}()
	}
	wg.Wait()
	r.Took = time.Since(t0)
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("lab %s: probe: %w", l.st.Name, err)
	}
	return r, nil
}

// probeSide picks the containers named (all running ones when none is
// named), sorted by name.
func (l *Lab) probeSide(cs []Container, names []string, field string) ([]Container, error) {
	var out []Container
	if len(names) == 0 {
		for _, c := range cs {
			if c.Phase == PhaseRunning && netns.Exists(netns.Path(c.NetNS)) {
				out = append(out, c)
			}
		}
		return out, nil
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		i := slices.IndexFunc(cs, func(c Container) bool { return c.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("lab %s: probe: %s %q: no such container (`tabby lab ls %s` lists them)", l.st.Name, field, n, l.st.Name)
		}
		if cs[i].Phase != PhaseRunning || !netns.Exists(netns.Path(cs[i].NetNS)) {
			return nil, fmt.Errorf("lab %s: probe: %s %q: the container is %s", l.st.Name, field, n, cs[i].Phase)
		}
		out = append(out, cs[i])
	}
	slices.SortFunc(out, func(a, b Container) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
