package nft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// Driver keeps the table `inet tabby` equal to the last Ruleset it was
// given. It remembers what it committed and the kernel's ruleset
// generation after the commit; when the generation has moved on (someone
// else committed anything, anywhere in the namespace) it reads the table
// back before diffing, so hand edits and deletions are repaired by the
// next Apply.
type Driver struct {
	log     *slog.Logger
	netnsFD int // 0: the caller's namespace
	ct      conntrackDeleter

	mu      sync.Mutex
	applied *policy.Ruleset // what the kernel holds, when valid
	gen     uint32          // generation right after our last commit (or check)
	valid   bool
	memo    map[string]*chainMemo
	last    Change
	monitor *changeMonitor // set while Run runs
}

// Option configures a Driver.
type Option func(*Driver)

// WithNetNS makes the driver program the network namespace open at fd
// instead of the caller's. The caller keeps fd open while the driver is
// used.
func WithNetNS(fd int) Option { return func(d *Driver) { d.netnsFD = fd } }

// New returns a driver. It starts nothing and touches no kernel state.
func New(log *slog.Logger, opts ...Option) *Driver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Driver{log: log.With("component", "policy-nft"), memo: map[string]*chainMemo{}}
	for _, o := range opts {
		o(d)
	}
	d.ct = netlinkConntrack{netnsFD: d.netnsFD}
	return d
}

// Change summarizes what one Apply did to the kernel.
type Change struct {
	// Resynced: the table was read back from the kernel first (first
	// Apply, or the kernel changed since our last commit).
	Resynced bool
	// Replaced: the table was deleted and rebuilt in the transaction
	// (drift that cannot be repaired in place).
	Replaced bool
	// Committed: a transaction was sent (false when nothing differed).
	Committed                      bool
	SetsAdded, SetsDeleted         int
	ElementsAdded, ElementsDeleted int // kernel elements: an interval is a start and an end
	ChainsAdded, ChainsRewritten   int
	ChainsDeleted, RulesWritten    int
	ConntrackFlushed               []netip.Addr
}

// LastChange reports what the last successful Apply changed.
func (d *Driver) LastChange() Change {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// chainMemo caches the expressions of a chain's rules while they stay equal.
type chainMemo struct {
	rules []policy.Rule
	exprs [][]expr.Any
	fps   []string // nil until needed
}

func (d *Driver) chainMemo(c *policy.Chain) (*chainMemo, error) {
	if m, ok := d.memo[c.Name]; ok && policy.RulesEqual(m.rules, c.Rules) {
		return m, nil
	}
	m := &chainMemo{rules: c.Rules, exprs: make([][]expr.Any, len(c.Rules))}
	for i, r := range c.Rules {
		e, err := ruleExprs(r)
		if err != nil {
			return nil, fmt.Errorf("chain %s rule %d (%s): %w", c.Name, i, r, err)
		}
		m.exprs[i] = e
	}
	d.memo[c.Name] = m
	return m, nil
}

func (m *chainMemo) fingerprints() ([]string, error) {
	if m.fps != nil {
		return m.fps, nil
	}
	fps := make([]string, len(m.exprs))
	for i, e := range m.exprs {
		fp, err := fingerprint(e)
		if err != nil {
			return nil, err
		}
		fps[i] = fp
	}
	m.fps = fps
	return fps, nil
}

// Apply makes the kernel's table equal to rs in one atomic transaction,
// changing only what differs: set and map elements one by one, whole
// chains when their rules changed. Calling it again with the same rs
// changes nothing. Addresses that disappear from the local workloads have
// their conntrack entries flushed after the commit.
func (d *Driver) Apply(ctx context.Context, rs *policy.Ruleset) error {
	if rs == nil {
		return errors.New("apply policy: no ruleset")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	// Attempts: with the cached view; then reading the kernel; then
	// rebuilding the table from scratch.
	for attempt := 0; attempt < 3; attempt++ {
		if err = ctx.Err(); err != nil {
			return fmt.Errorf("apply policy: %w", err)
		}
		var ch Change
		ch, err = d.apply(ctx, rs, attempt == 2)
		if err == nil {
			d.last = ch
			d.logChange(ch)
			return nil
		}
		d.valid = false
		d.log.Warn("applying nftables ruleset failed; retrying from the kernel's state", "attempt", attempt+1, "error", err)
	}
	return fmt.Errorf("apply policy: %w", err)
}

func (d *Driver) logChange(ch Change) {
	switch {
	case ch.Replaced:
		d.log.Info("rebuilt nftables table", "table", policy.TableName, "chains", ch.ChainsAdded, "sets", ch.SetsAdded)
	case ch.Resynced && ch.Committed:
		d.log.Info("repaired nftables table", "chains_added", ch.ChainsAdded, "chains_rewritten", ch.ChainsRewritten,
			"chains_deleted", ch.ChainsDeleted, "elements_added", ch.ElementsAdded, "elements_deleted", ch.ElementsDeleted)
	case ch.Committed:
		d.log.Debug("updated nftables table", "chains_added", ch.ChainsAdded, "chains_rewritten", ch.ChainsRewritten,
			"chains_deleted", ch.ChainsDeleted, "elements_added", ch.ElementsAdded, "elements_deleted", ch.ElementsDeleted)
	}
}

func (d *Driver) conn(p *plan) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{}
	if d.netnsFD != 0 {
		opts = append(opts, nftables.WithNetNSFd(d.netnsFD))
	}
	if p != nil {
		// The whole batch goes out in one sendmsg and every message is
		// acknowledged (rules are also echoed) before we read anything:
		// size both buffers for it, past net.core.[rw]mem_max (we are
		// root: SO_*BUFFORCE).
		snd := max(1<<20, 2*p.bytes)
		rcv := max(1<<20, 2*p.bytes+1024*p.messages)
		opts = append(opts, nftables.WithSockOptions(func(c *netlink.Conn) error {
			if err := c.SetWriteBuffer(snd); err != nil {
				return fmt.Errorf("set netlink send buffer: %w", err)
			}
			if err := c.SetReadBuffer(rcv); err != nil {
				return fmt.Errorf("set netlink receive buffer: %w", err)
			}
			return nil
		}))
	}
	return nftables.New(opts...)
}

// Current reports whether the kernel's table is exactly what the last
// Apply committed: nobody has committed since, or (with Run's monitor)
// nobody has touched the table. Applying the same Ruleset again would then
// change nothing, so callers may skip the compile.
func (d *Driver) Current() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.valid || d.applied == nil {
		return false
	}
	gen, err := d.generation()
	if err != nil {
		return false
	}
	return gen == d.gen || d.monitor != nil && d.monitor.clean(d.gen, gen)
}

// apply runs one attempt.
func (d *Driver) apply(ctx context.Context, rs *policy.Ruleset, rebuild bool) (Change, error) {
	gen, err := d.generation()
	if err != nil {
		return Change{}, err
	}
	var p *plan
	resynced := false
	if d.valid && !rebuild && (gen == d.gen || d.monitor != nil && d.monitor.clean(d.gen, gen)) {
		// Nobody committed since our last commit, or nobody touched our
		// table: the kernel holds what we last applied.
		p, err = d.planFromModel(d.applied, rs)
	} else {
		resynced = true
		losses := 0
		if d.monitor != nil {
			losses = d.monitor.lossCount()
		}
		var st *kernelState
		st, gen, err = d.readStable()
		if err != nil {
			return Change{}, err
		}
		if d.monitor != nil {
			d.monitor.resynced(gen, losses)
		}
		p, err = d.planFromKernel(st, rs, rebuild)
	}
	if err != nil {
		return Change{}, err
	}
	ch := p.change()
	ch.Resynced = resynced
	if !p.empty() {
		if err := ctx.Err(); err != nil {
			return Change{}, err
		}
		if err := d.exec(p, rs); err != nil {
			return Change{}, err
		}
		ch.Committed = true
		after, err := d.generation()
		if err != nil {
			return Change{}, err
		}
		// Exactly one commit since we looked: ours. Otherwise someone
		// else committed in between and we must read the kernel next time.
		d.valid = after == gen+1
		gen = after
	} else {
		d.valid = true
	}
	d.applied, d.gen = rs, gen
	d.pruneMemo(rs)
	if len(p.gone) > 0 {
		if err := d.ct.deleteFlows(p.gone); err != nil {
			d.log.Warn("flushing conntrack of removed endpoints failed", "addrs", p.gone, "error", err)
		}
		ch.ConntrackFlushed = p.gone
	}
	return ch, nil
}

// readStable reads the table, retrying while the generation moves under it.
func (d *Driver) readStable() (*kernelState, uint32, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if d.netnsFD != 0 {
		opts = append(opts, nftables.WithNetNSFd(d.netnsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, 0, fmt.Errorf("open nftables connection: %w", err)
	}
	defer c.CloseLasting()
	dumper, err := newElementDumper(d.netnsFD)
	if err != nil {
		return nil, 0, err
	}
	defer dumper.Close()
	for i := 0; ; i++ {
		before, err := d.generation()
		if err != nil {
			return nil, 0, err
		}
		st, err := readKernel(c, dumper)
		if err != nil {
			return nil, 0, fmt.Errorf("read table %s: %w", policy.TableName, err)
		}
		after, err := d.generation()
		if err != nil {
			return nil, 0, err
		}
		if before == after || i == 4 {
			return st, after, nil
		}
	}
}

func (d *Driver) pruneMemo(rs *policy.Ruleset) {
	if len(d.memo) <= len(rs.Chains) {
		return
	}
	keep := make(map[string]*chainMemo, len(rs.Chains))
	for _, c := range rs.Chains {
		if m, ok := d.memo[c.Name]; ok {
			keep[c.Name] = m
		}
	}
	d.memo = keep
}

// Delete removes the table (and with it every Tabby rule) from the kernel.
// A missing table is not an error.
func (d *Driver) Delete(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.valid, d.applied = false, nil
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := d.conn(nil)
	if err != nil {
		return fmt.Errorf("delete table %s: %w", policy.TableName, err)
	}
	c.DelTable(tableRef())
	if err := c.Flush(); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete table %s: %w", policy.TableName, err)
	}
	return nil
}

// Dump reads the table from the kernel and renders it canonically (see
// kernelState.dump): equal dumps mean equal tables.
func (d *Driver) Dump(ctx context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return "", err
	}
	st, _, err := d.readStable()
	if err != nil {
		return "", err
	}
	return st.dump(), nil
}
