// Package memstore is an in-memory datastore.Store for fast unit tests. It
// keeps a full history of changes so watches can start from old revisions,
// exactly like etcd (until Compact is called). It imports datastore only.
package memstore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/internal/datastore"
)

var _ datastore.Store = (*Store)(nil)

// Store is the in-memory implementation of datastore.Store.
type Store struct {
	mu        sync.Mutex
	rev       int64
	compacted int64
	data      map[string]datastore.KV
	history   []datastore.Event // every change, in revision order
	changed   chan struct{}     // closed and replaced on every write
	closed    bool
	elections map[string]chan struct{} // see NewElector
}

// New returns an empty store at revision 1.
func New() *Store {
	return &Store{rev: 1, data: map[string]datastore.KV{}, changed: make(chan struct{})}
}

func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %v", datastore.ErrUnavailable, err)
	}
	if s.closed {
		return fmt.Errorf("%w: store closed", datastore.ErrUnavailable)
	}
	return nil
}

func (s *Store) Get(ctx context.Context, key string) (*datastore.KV, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	kv, ok := s.data[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, datastore.ErrNotFound)
	}
	return clone(kv), nil
}

func (s *Store) List(ctx context.Context, prefix string) ([]*datastore.KV, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, 0, err
	}
	var out []*datastore.KV
	for k, kv := range s.data {
		if strings.HasPrefix(k, prefix) {
			out = append(out, clone(kv))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, s.rev, nil
}

func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	return s.Txn(ctx, []datastore.Op{{Type: datastore.OpCreate, Key: key, Value: value}})
}

func (s *Store) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	return s.Txn(ctx, []datastore.Op{{Type: datastore.OpUpdate, Key: key, Value: value, Revision: rev}})
}

func (s *Store) Delete(ctx context.Context, key string, rev int64) error {
	_, err := s.Txn(ctx, []datastore.Op{{Type: datastore.OpDelete, Key: key, Revision: rev}})
	return err
}

func (s *Store) Txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	if err := datastore.CheckOps(ops); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	cur := make([]*datastore.KV, len(ops))
	failed := false
	for i, op := range ops {
		kv, ok := s.data[op.Key]
		if ok {
			cur[i] = clone(kv)
		}
		switch op.Type {
		case datastore.OpCreate:
			failed = failed || ok
		case datastore.OpUpdate, datastore.OpDelete:
			failed = failed || !ok || kv.Revision != op.Revision
		case datastore.OpCheck:
			failed = failed || (op.Revision == 0 && ok) || (op.Revision != 0 && (!ok || kv.Revision != op.Revision))
		}
	}
	if failed {
		return 0, datastore.TxnFailure(ops, cur)
	}
	writes := 0
	for _, op := range ops {
		if op.Type != datastore.OpCheck {
			writes++
		}
	}
	if writes == 0 {
		return s.rev, nil
	}
	s.rev++
	for _, op := range ops {
		prev, had := s.data[op.Key]
		var prevp *datastore.KV
		if had {
			prevp = clone(prev)
		}
		switch op.Type {
		case datastore.OpCreate, datastore.OpUpdate:
			kv := datastore.KV{Key: op.Key, Value: append([]byte(nil), op.Value...), Revision: s.rev, CreateRevision: s.rev}
			if had {
				kv.CreateRevision = prev.CreateRevision
			}
			s.data[op.Key] = kv
			s.history = append(s.history, datastore.Event{Type: datastore.EventPut, KV: *clone(kv), Prev: prevp})
		case datastore.OpDelete:
			delete(s.data, op.Key)
			s.history = append(s.history, datastore.Event{Type: datastore.EventDelete, KV: datastore.KV{Key: op.Key, Revision: s.rev}, Prev: prevp})
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return s.rev, nil
}

// Compact forgets history before rev; watches from older revisions then
// get ErrCompacted, as with etcd.
func (s *Store) Compact(rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev <= s.compacted {
		return
	}
	i := sort.Search(len(s.history), func(i int) bool { return s.history[i].KV.Revision >= rev })
	s.history = append([]datastore.Event(nil), s.history[i:]...)
	s.compacted = rev
}

// Revision returns the current store revision.
func (s *Store) Revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) <-chan datastore.Event {
	out := make(chan datastore.Event, 64)
	s.mu.Lock()
	if fromRev <= 0 {
		fromRev = s.rev + 1
	}
	s.mu.Unlock()
	go func() {
		defer close(out)
		next := fromRev
		for {
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				select {
				case out <- datastore.Event{Type: datastore.EventError, Err: fmt.Errorf("watch %s: %w: store closed", prefix, datastore.ErrUnavailable)}:
				case <-ctx.Done():
				}
				return
			}
			if next < s.compacted {
				s.mu.Unlock()
				select {
				case out <- datastore.Event{Type: datastore.EventError, Err: fmt.Errorf("watch %s from %d: %w", prefix, next, datastore.ErrCompacted)}:
				case <-ctx.Done():
				}
				return
			}
			i := sort.Search(len(s.history), func(i int) bool { return s.history[i].KV.Revision >= next })
			var batch []datastore.Event
			for _, ev := range s.history[i:] {
				if strings.HasPrefix(ev.KV.Key, prefix) {
					batch = append(batch, cloneEvent(ev))
				}
			}
			next = s.rev + 1
			changed := s.changed
			s.mu.Unlock()
			for _, ev := range batch {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.changed)
	}
	return nil
}

// cloneEvent copies ev so no two watchers share a value's bytes.
func cloneEvent(ev datastore.Event) datastore.Event {
	ev.KV = *clone(ev.KV)
	if ev.Prev != nil {
		ev.Prev = clone(*ev.Prev)
	}
	return ev
}

func clone(kv datastore.KV) *datastore.KV {
	kv.Value = append([]byte(nil), kv.Value...)
	return &kv
}
