// Package flowlog records the flows of this host's endpoints (the agent
// side of docs/design/policy.md "Flow logs"): allowed flows from
// conntrack events, denied packets from the NFLOG group the ruleset's
// deny paths log to, each attributed to the tier, policy and rule that
// decided it by replaying it through the reference form of the ruleset
// the agent programmed (and, where staged policies exist, through the
// ruleset they would make: the pending verdict). Records are aggregated
// into windows (internal/flows) and kept in a bounded ring served on
// GET /flows.
//
// It imports internal/flows, internal/agent/policy and internal/api; the
// agent wires it in and it must not import internal/agent.
package flowlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/flows"
)

// Config configures a Collector. Zero fields take the defaults.
type Config struct {
	Node string
	// Window is how long flows are aggregated (flows.DefaultWindow).
	Window time.Duration
	// RingSize is the number of records kept (flows.DefaultRingSize).
	RingSize int
	// MaxWindowFlows bounds one window's distinct flows.
	MaxWindowFlows int
	// MaxTracked bounds the conntrack entries followed for counters.
	MaxTracked int
	// NFLogGroup is the NFLOG group the deny paths log to.
	NFLogGroup uint16
	// DenyRate is the kernel's limit on logged denied packets per second
	// (all deny paths together).
	DenyRate uint32
}

// Defaults.
const (
	DefaultNFLogGroup = 20
	DefaultDenyRate   = 200
	DefaultMaxTracked = 16384
)

// WithDefaults returns c with unset fields defaulted.
func (c Config) WithDefaults() Config {
	if c.Window <= 0 {
		c.Window = flows.DefaultWindow
	}
	if c.RingSize <= 0 {
		c.RingSize = flows.DefaultRingSize
	}
	if c.MaxWindowFlows <= 0 {
		c.MaxWindowFlows = flows.DefaultMaxWindowFlows
	}
	if c.MaxTracked <= 0 {
		c.MaxTracked = DefaultMaxTracked
	}
	if c.NFLogGroup == 0 {
		c.NFLogGroup = DefaultNFLogGroup
	}
	if c.DenyRate == 0 {
		c.DenyRate = DefaultDenyRate
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Node == "" {
		return errors.New("flow logs: no node name")
	}
	if c.Window < 100*time.Millisecond {
		return fmt.Errorf("flow-window: %s is shorter than 100ms", c.Window)
	}
	return nil
}

// Collector owns the flow sources, the aggregation and the ring. New
// starts nothing; Run runs the sources until ctx ends.
type Collector struct {
	cfg  Config
	log  *slog.Logger
	ring *flows.Ring
	agg  *flows.Aggregator
	attr *Attributor
	m    *metrics

	mu      sync.Mutex
	sources []source
	deny    *policy.DenyLogger
}

// source is one kernel feed of observations (conntrack, NFLOG).
type source interface {
	run(ctx context.Context) error
}

// New returns a collector; it starts nothing.
func New(cfg Config, log *slog.Logger) (*Collector, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ring := flows.NewRing(cfg.RingSize)
	c := &Collector{
		cfg:  cfg,
		log:  log.With("component", "flowlog"),
		ring: ring,
		agg:  flows.NewAggregator(ring, cfg.MaxWindowFlows),
		attr: NewAttributor(cfg.Node),
	}
	c.m = newMetrics(c)
	return c, nil
}

// Config is the effective configuration.
func (c *Collector) Config() Config { return c.cfg }

// Ring is the collector's ring (for tests and the console).
func (c *Collector) Ring() *flows.Ring { return c.ring }

// Handler serves GET /flows.
func (c *Collector) Handler() http.Handler { return flows.Handler(c.ring) }

// PolicyState takes the state the dataplane just programmed (the agent
// calls it after every full sync).
func (c *Collector) PolicyState(s *policy.State, staged *Staged) { c.attr.SetState(s, staged) }

// PolicyChanges takes the remote changes the dataplane just programmed as
// set updates.
func (c *Collector) PolicyChanges(changes []policy.Change) { c.attr.Update(changes) }

// add adds observations to the current window; isNew says each is a
// flow seen for the first time (a new conntrack entry, a denied packet).
func (c *Collector) add(isNew bool, recs ...flows.FlowRecord) {
	for _, r := range recs {
		c.m.observed(&r, isNew)
		c.agg.Add(r)
	}
}

// Run closes a window every Window and runs the kernel sources until
// ctx ends; a source that fails is logged and restarted after a pause.
func (c *Collector) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	c.mu.Lock()
	srcs := c.sources
	c.mu.Unlock()
	for _, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := s.run(ctx); err != nil && ctx.Err() == nil {
					c.log.Warn("flow source failed; restarting", "source", fmt.Sprintf("%T", s), "error", err)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
			}
		}()
	}
	t := time.NewTicker(c.cfg.Window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			c.agg.Flush()
			return nil
		case <-t.C:
			c.tick()
		}
	}
}

// tick closes a window.
func (c *Collector) tick() {
	c.mu.Lock()
	srcs := c.sources
	c.mu.Unlock()
	for _, s := range srcs {
		if p, ok := s.(interface{ poll() }); ok {
			p.poll()
		}
	}
	recs := c.agg.Flush()
	c.m.flushed(len(recs))
}

// Programmed returns the ruleset to program: rs with its deny paths
// logging to the collector's NFLOG group.
func (c *Collector) Programmed(rs *policy.Ruleset) *policy.Ruleset {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deny == nil {
		c.deny = &policy.DenyLogger{Group: c.cfg.NFLogGroup, Rate: c.cfg.DenyRate}
	}
	return c.deny.Apply(rs)
}
