package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tabbynet/tabby/internal/datastore"
)

// Reconnect backoff of a broken watch.
const (
	watchBackoffMin = 50 * time.Millisecond
	watchBackoffMax = 2 * time.Second
)

// Watch streams changes under prefix from fromRev (inclusive; 0: from the
// revision current when Watch is called). When the stream breaks (server
// restart, lost leader, network) it is opened again from the revision
// after the last one delivered, so no change is lost or repeated; when
// that revision has been compacted it sends an EventError wrapping
// datastore.ErrCompacted and closes.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) <-chan datastore.Event {
	out := make(chan datastore.Event, 64)
	next := fromRev
	if next <= 0 {
		// Fix "now" before returning, so a write made after Watch returns
		// is always seen.
		rctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		if rev, err := s.Revision(rctx); err == nil {
			next = rev + 1
		}
		cancel()
	}
	go s.watch(ctx, prefix, next, out)
	return out
}

func (s *Store) watch(ctx context.Context, prefix string, next int64, out chan<- datastore.Event) {
	defer close(out)
	// A consumer that stops reading must not keep the goroutine once ctx
	// ends or the store is closed.
	send := func(ev datastore.Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		case <-s.cli.Ctx().Done():
			return false
		}
	}
	backoff := watchBackoffMin
	for ctx.Err() == nil {
		if s.cli.Ctx().Err() != nil {
			select { // best effort: the consumer may be gone too
			case out <- datastore.Event{Type: datastore.EventError, Err: fmt.Errorf("watch %s: %w: store closed", prefix, datastore.ErrUnavailable)}:
			default:
			}
			return
		}
		if next <= 0 {
			// The store was unreachable when the watch began: "now" is
			// when it answers again.
			if rev, err := s.Revision(ctx); err == nil {
				next = rev + 1
			} else if !sleep(ctx, &backoff) {
				return
			}
			continue
		}
		delivered, compacted, stop := s.watchOnce(ctx, prefix, &next, send)
		if stop {
			return
		}
		if compacted != 0 {
			send(datastore.Event{Type: datastore.EventError,
				Err: fmt.Errorf("watch %s from %d: %w (compacted up to %d)", prefix, next, datastore.ErrCompacted, compacted)})
			return
		}
		if delivered {
			backoff = watchBackoffMin
		}
		if !sleep(ctx, &backoff) {
			return
		}
	}
}

// watchOnce runs one etcd watch stream from *next until it breaks,
// advancing *next past every delivered event. It reports whether anything
// was delivered, the compact revision if the start was compacted, and
// whether to stop (ctx ended or the consumer is gone).
func (s *Store) watchOnce(ctx context.Context, prefix string, next *int64, send func(datastore.Event) bool) (delivered bool, compacted int64, stop bool) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	start := *next
	wch := s.watcher.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(start),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	for wresp := range wch {
		if wresp.CompactRevision != 0 {
			return delivered, wresp.CompactRevision, false
		}
		if err := wresp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return delivered, *next, false
			}
			return delivered, 0, ctx.Err() != nil
		}
		if wresp.IsProgressNotify() {
			// Every event up to the header revision has been sent.
			if r := wresp.Header.Revision + 1; r > *next {
				*next = r
			}
			continue
		}
		for _, ev := range wresp.Events {
			if ev.Kv.ModRevision < start {
				continue // never expected: etcd starts at the asked revision
			}
			if !send(toEvent(ev)) {
				return delivered, 0, true
			}
			delivered = true
			*next = ev.Kv.ModRevision + 1
		}
	}
	return delivered, 0, ctx.Err() != nil
}

func toEvent(ev *clientv3.Event) datastore.Event {
	out := datastore.Event{Type: datastore.EventPut, KV: *toKV(ev.Kv)}
	if ev.Type == mvccpb.DELETE {
		out.Type = datastore.EventDelete
		out.KV = datastore.KV{Key: string(ev.Kv.Key), Revision: ev.Kv.ModRevision}
	}
	if ev.PrevKv != nil {
		out.Prev = toKV(ev.PrevKv)
	}
	return out
}

// sleep waits *backoff (then doubles it, up to the maximum); false when
// ctx ended first.
func sleep(ctx context.Context, backoff *time.Duration) bool {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	*backoff = min(*backoff*2, watchBackoffMax)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
