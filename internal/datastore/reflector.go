package datastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/api"
)

// BadRecord is a stored value that cannot be decoded as what its key says
// it is. Readers skip it and go on; `tabby get` and `tabby ipam check`
// name it so an operator can fix or delete it.
type BadRecord struct {
	Kind     string // the reflector's name: a resource kind or an IPAM prefix
	Key      string
	Revision int64
	Err      error
}

// Item is one decoded key.
type Item[T any] struct {
	Key      string
	Value    T
	Revision int64
}

// Handler receives a Reflector's events, from its Run goroutine only (one
// call at a time, in revision order).
type Handler[T any] struct {
	// Replace swaps in a complete listing taken at rev (after the first
	// list and after every relist). Items are in key order.
	Replace func(items []Item[T], rev int64)
	// Put records a new or changed value.
	Put func(it Item[T])
	// Delete removes a key the handler was given; old is its last value.
	// A put that cannot be decoded deletes the key too: what the consumer
	// sees after a watch event is what a fresh listing would give.
	Delete func(key string, old T, rev int64)
}

// ReflectorOptions tune a Reflector; the zero value is usable.
type ReflectorOptions struct {
	// Name says what is reflected, in logs and BadRecord.Kind (default the prefix).
	Name string
	Log  *slog.Logger
	// OnBad is called once for each key and revision that cannot be
	// decoded (a metric hook); the reflector also logs it once.
	OnBad func(BadRecord)
	// OnRelist is called each time a watch ended and the prefix is listed again.
	OnRelist func()
	// MinBackoff and MaxBackoff bound the wait between failed listings
	// (default 100 ms and 5 s); ListTimeout bounds one listing (default 10 s).
	MinBackoff, MaxBackoff, ListTimeout time.Duration
}

// Reflector keeps a consumer in step with every key under a prefix: it
// lists, hands the listing to its handler, watches from the listing's
// revision, and lists again when the watch ends (a compaction, a broken
// stream), backing off while the datastore is unreachable. While it
// cannot list, the handler keeps the last state it was given.
//
// A value that cannot be decoded is skipped, logged once per key and
// revision and reported to OnBad; everything else under the prefix is
// still served. One damaged record must never stall a whole kind.
//
// Build it with NewReflector; Run does the work. It is the one list/watch
// loop of Tabby: the agent's cache, the router's IPAM mirror and the DNS
// server's datastore source all use it.
type Reflector[T any] struct {
	store  Store
	prefix string
	decode func(*KV) (T, error)
	h      Handler[T]
	o      ReflectorOptions

	ready chan struct{}
	once  sync.Once

	// Owned by the Run goroutine.
	known map[string]T
	bad   map[string]int64 // key → revision already reported
}

// NewReflector returns a reflector of prefix; it starts nothing.
func NewReflector[T any](store Store, prefix string, decode func(*KV) (T, error), h Handler[T], o ReflectorOptions) *Reflector[T] {
	if o.Name == "" {
		o.Name = prefix
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.ListTimeout <= 0 {
		o.ListTimeout = 10 * time.Second
	}
	return &Reflector[T]{store: store, prefix: prefix, decode: decode, h: h, o: o,
		ready: make(chan struct{}), known: map[string]T{}, bad: map[string]int64{}}
}

// NewResourceReflector reflects the resources of one kind (all namespaces).
func NewResourceReflector(store Store, kind string, h Handler[api.Resource], o ReflectorOptions) (*Reflector[api.Resource], error) {
	k, err := lookup(kind)
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = k.Kind
	}
	dec := func(kv *KV) (api.Resource, error) { return decode(k, kv) }
	return NewReflector(store, KeyPrefix+k.Plural+"/", dec, h, o), nil
}

// Ready is closed once the first listing was handed to the handler.
func (r *Reflector[T]) Ready() <-chan struct{} { return r.ready }

// Run lists and watches until ctx ends; it always returns nil then.
func (r *Reflector[T]) Run(ctx context.Context) error {
	backoff := r.o.MinBackoff
	for ctx.Err() == nil {
		rev, err := r.list(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.o.Log.Warn("cannot list the datastore; keeping the last known state", "what", r.o.Name, "error", err, "retry_in", backoff)
			}
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, r.o.MaxBackoff)
			continue
		}
		backoff = r.o.MinBackoff
		err = r.watch(ctx, rev+1)
		if ctx.Err() != nil {
			break
		}
		if r.o.OnRelist != nil {
			r.o.OnRelist()
		}
		if errors.Is(err, ErrCompacted) {
			r.o.Log.Info("watch fell behind a compaction; listing again", "what", r.o.Name)
			continue
		}
		r.o.Log.Info("watch ended; listing again", "what", r.o.Name, "error", err)
		sleepCtx(ctx, r.o.MinBackoff)
	}
	return nil
}

func (r *Reflector[T]) list(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, r.o.ListTimeout)
	kvs, rev, err := r.store.List(lctx, r.prefix)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", r.o.Name, err)
	}
	items := make([]Item[T], 0, len(kvs))
	known := make(map[string]T, len(kvs))
	present := make(map[string]bool, len(r.bad))
	for _, kv := range kvs {
		v, err := r.decode(kv)
		if err != nil {
			r.reportBad(kv, err)
			present[kv.Key] = true
			continue
		}
		items = append(items, Item[T]{Key: kv.Key, Value: v, Revision: kv.Revision})
		known[kv.Key] = v
	}
	for k := range r.bad {
		if !present[k] {
			delete(r.bad, k) // fixed or deleted while we were not watching
		}
	}
	r.known = known
	r.h.Replace(items, rev)
	r.once.Do(func() { close(r.ready) })
	return rev, nil
}

var errWatchClosed = errors.New("watch channel closed")

func (r *Reflector[T]) watch(ctx context.Context, from int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for ev := range r.store.Watch(wctx, r.prefix, from) {
		switch ev.Type {
		case EventError:
			return ev.Err
		case EventPut:
			v, err := r.decode(&ev.KV)
			if err != nil {
				r.reportBad(&ev.KV, err)
				r.forget(ev.KV.Key, ev.KV.Revision)
				continue
			}
			delete(r.bad, ev.KV.Key)
			r.known[ev.KV.Key] = v
			r.h.Put(Item[T]{Key: ev.KV.Key, Value: v, Revision: ev.KV.Revision})
		case EventDelete:
			delete(r.bad, ev.KV.Key)
			r.forget(ev.KV.Key, ev.KV.Revision)
		}
	}
	return errWatchClosed
}

// forget deletes key from the handler's view if it was there.
func (r *Reflector[T]) forget(key string, rev int64) {
	old, ok := r.known[key]
	if !ok {
		return
	}
	delete(r.known, key)
	r.h.Delete(key, old, rev)
}

func (r *Reflector[T]) reportBad(kv *KV, err error) {
	if rev, seen := r.bad[kv.Key]; seen && rev == kv.Revision {
		return
	}
	r.bad[kv.Key] = kv.Revision
	r.o.Log.Warn("skipping a datastore record that cannot be decoded; fix or delete it",
		"what", r.o.Name, "key", kv.Key, "revision", kv.Revision, "error", err)
	if r.o.OnBad != nil {
		r.o.OnBad(BadRecord{Kind: r.o.Name, Key: kv.Key, Revision: kv.Revision, Err: err})
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
