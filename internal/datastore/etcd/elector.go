package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/tabbynet/tabby/internal/datastore"
)

// Elector takes part in one etcd election (clientv3/concurrency): at most
// one Elector per name leads at a time, the holder of the oldest key under
// the election's prefix, bound to a lease that its session keeps alive.
// A leader that stops cleanly revokes its lease and the next candidate
// takes over at once; one that dies or loses etcd is replaced when its
// lease expires (TTL).
//
// Leadership is for sharing work, not a lock: a partitioned leader learns
// it lost the lease only when its keep-alives fail, so two may briefly
// both believe they lead. Work done under it must be safe anyway (Tabby's
// writes are compare-and-swap).
type Elector struct {
	s      *Store
	prefix string
	id     string
	ttl    int // seconds
	log    *slog.Logger
	leader atomic.Bool
}

// NewElector returns an elector for name with candidate id (e.g. the node
// name); ttl is rounded up to whole seconds (at least 1). It starts nothing.
func NewElector(s *Store, name, id string, ttl time.Duration, log *slog.Logger) *Elector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	secs := max(1, int((ttl+time.Second-1)/time.Second))
	return &Elector{s: s, prefix: datastore.ElectionPrefix + name, id: id, ttl: secs,
		log: log.With("election", name)}
}

// Leader reports whether this candidate leads now.
func (e *Elector) Leader() bool { return e.leader.Load() }

// Run campaigns until ctx ends, campaigning again after losing the lead
// or the connection (backing off up to 10 s). It returns nil when ctx ends.
func (e *Elector) Run(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		led, err := e.term(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if led {
			backoff = 200 * time.Millisecond
		}
		e.log.Warn("election: campaigning again", "error", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 10*time.Second)
	}
	return nil
}

// term is one session: campaign, lead until the session ends or ctx does,
// then give the lease back. It reports whether it led.
func (e *Elector) term(ctx context.Context) (bool, error) {
	// The session outlives ctx just long enough to revoke its lease.
	sctx, scancel := context.WithCancel(context.WithoutCancel(ctx))
	defer scancel()
	sess, err := concurrency.NewSession(e.s.cli, concurrency.WithTTL(e.ttl), concurrency.WithContext(sctx))
	if err != nil {
		return false, fmt.Errorf("election session: %w", err)
	}
	defer func() {
		if err := sess.Close(); err != nil {
			e.log.Debug("election: revoke lease", "error", err)
		}
	}()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	el := concurrency.NewElection(sess, e.prefix)
	if err := el.Campaign(cctx, e.id); err != nil {
		return false, fmt.Errorf("campaign: %w", err)
	}
	select {
	case <-sess.Done(): // the lease expired while we waited: our key is gone
		return false, errors.New("election lease expired while campaigning")
	default:
	}
	e.leader.Store(true)
	defer e.leader.Store(false) // before the lease is revoked
	e.log.Info("election: leading", "id", e.id)
	select {
	case <-sess.Done():
		e.log.Warn("election: lost the lease; no longer leading", "id", e.id)
		return true, errors.New("election lease lost")
	case <-ctx.Done():
		e.log.Info("election: stepping down", "id", e.id)
		return true, nil
	}
}
