package datastore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// view is what a consumer of a Reflector holds.
type view struct {
	mu       sync.Mutex
	m        map[string]string
	replaces int
	bad      []datastore.BadRecord
}

func (v *view) handler() datastore.Handler[string] {
	return datastore.Handler[string]{
		Replace: func(items []datastore.Item[string], _ int64) {
			v.mu.Lock()
			defer v.mu.Unlock()
			v.m = map[string]string{}
			for _, it := range items {
				v.m[it.Key] = it.Value
			}
			v.replaces++
		},
		Put: func(it datastore.Item[string]) {
			v.mu.Lock()
			defer v.mu.Unlock()
			v.m[it.Key] = it.Value
		},
		Delete: func(key, old string, _ int64) {
			v.mu.Lock()
			defer v.mu.Unlock()
			if v.m[key] != old {
				panic(fmt.Sprintf("delete %s: old value %q, the view holds %q", key, old, v.m[key]))
			}
			delete(v.m, key)
		},
	}
}

func (v *view) snapshot() (map[string]string, int, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return maps.Clone(v.m), v.replaces, len(v.bad)
}

// decodeText accepts any value that does not start with "garbage".
func decodeText(kv *datastore.KV) (string, error) {
	if strings.HasPrefix(string(kv.Value), "garbage") {
		return "", errors.New("cannot decode")
	}
	return string(kv.Value), nil
}

// flaky breaks the first watch with ErrCompacted and fails the first
// listings, so the reflector has to back off and relist.
type flaky struct {
	datastore.Store
	failLists   atomic.Int32
	breakWatch  chan struct{} // closed: the current watch ends with ErrCompacted
	watches     atomic.Int32
	listsFailed atomic.Int32
}

func (f *flaky) List(ctx context.Context, prefix string) ([]*datastore.KV, int64, error) {
	if f.failLists.Add(-1) >= 0 {
		f.listsFailed.Add(1)
		return nil, 0, datastore.ErrUnavailable
	}
	return f.Store.List(ctx, prefix)
}

func (f *flaky) Watch(ctx context.Context, prefix string, from int64) <-chan datastore.Event {
	in := f.Store.Watch(ctx, prefix, from)
	if f.watches.Add(1) > 1 {
		return in
	}
	out := make(chan datastore.Event)
	go func() {
		defer close(out)
		for {
			select {
			case ev, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case <-f.breakWatch:
				select {
				case out <- datastore.Event{Type: datastore.EventError, Err: datastore.ErrCompacted}:
				case <-ctx.Done():
				}
				return
			}
		}
	}()
	return out
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testReflector(t *testing.T, s datastore.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := fmt.Sprintf("/test/reflector/%d/", time.Now().UnixNano())
	mustCreate := func(k, v string) int64 {
		t.Helper()
		rev, err := s.Create(ctx, p+k, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	revA := mustCreate("a", "one")
	mustCreate("b", "garbage\xff")
	mustCreate("c", "three")

	f := &flaky{Store: s, breakWatch: make(chan struct{})}
	f.failLists.Store(2)
	var v view
	v.m = map[string]string{}
	r := datastore.NewReflector(f, p, decodeText, v.handler(), datastore.ReflectorOptions{
		Log:        etcdtest.Logger(t),
		OnBad:      func(b datastore.BadRecord) { v.mu.Lock(); v.bad = append(v.bad, b); v.mu.Unlock() },
		MinBackoff: time.Millisecond,
	})
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- r.Run(rctx) }()
	defer func() { rcancel(); <-done }()

	// The bad key is skipped; the rest is served (after two failed lists).
	<-r.Ready()
	got, _, nbad := v.snapshot()
	if diff := cmp.Diff(map[string]string{p + "a": "one", p + "c": "three"}, got); diff != "" {
		t.Fatalf("first listing (-want +got):\n%s", diff)
	}
	if n := f.listsFailed.Load(); n != 2 {
		t.Errorf("failed listings = %d, want 2 (the reflector retries)", n)
	}
	if nbad != 1 {
		t.Errorf("bad records reported = %d, want 1", nbad)
	}

	// Watch: updates, a bad put of a good key is a delete, deletes.
	if _, err := s.Update(ctx, p+"a", []byte("garbage too"), revA); err != nil {
		t.Fatal(err)
	}
	mustCreate("d", "four")
	waitUntil(t, "the bad put of a to delete it and d to appear", func() bool {
		got, _, _ := v.snapshot()
		return cmp.Equal(got, map[string]string{p + "c": "three", p + "d": "four"})
	})

	// A relist (the watch fell behind a compaction) finds what changed
	// in between and reports no bad record twice.
	kv, err := s.Get(ctx, p+"b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, p+"b", []byte("two"), kv.Revision); err != nil {
		t.Fatal(err)
	}
	close(f.breakWatch)
	waitUntil(t, "the relist to see b fixed", func() bool {
		got, replaces, _ := v.snapshot()
		return replaces >= 2 && got[p+"b"] == "two"
	})
	got, _, nbad = v.snapshot()
	if diff := cmp.Diff(map[string]string{p + "b": "two", p + "c": "three", p + "d": "four"}, got); diff != "" {
		t.Fatalf("after relist (-want +got):\n%s", diff)
	}
	if nbad != 2 { // b at its first revision, a at its bad revision: once each
		t.Errorf("bad records reported = %d, want 2 (once per key and revision)", nbad)
	}
	if kv, err = s.Get(ctx, p+"c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, p+"c", kv.Revision); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "c to be deleted", func() bool {
		got, _, _ := v.snapshot()
		_, ok := got[p+"c"]
		return !ok
	})
}

func TestReflectorMemstore(t *testing.T) { testReflector(t, memstore.New()) }
func TestReflectorEtcd(t *testing.T)     { testReflector(t, etcdtest.New(t)) }

// TestClientListSkipsBadRecords: one undecodable resource does not hide
// the others; the error names it.
func TestClientListSkipsBadRecords(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	c := datastore.NewClient(s)
	for _, n := range []string{"a", "c"} {
		if _, err := c.Create(ctx, &api.Node{ObjectMeta: api.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(ctx, datastore.KeyPrefix+"nodes/b", []byte("\x00garbage")); err != nil {
		t.Fatal(err)
	}
	rs, _, err := c.List(ctx, "Node", "")
	var bad *datastore.BadRecordsError
	if !errors.As(err, &bad) || len(bad.Records) != 1 || bad.Records[0].Key != datastore.KeyPrefix+"nodes/b" {
		t.Fatalf("List error = %v, want a BadRecordsError naming %snodes/b", err, datastore.KeyPrefix)
	}
	var names []string
	for _, r := range rs {
		names = append(names, r.GetObjectMeta().Name)
	}
	if diff := cmp.Diff([]string{"a", "c"}, names); diff != "" {
		t.Errorf("listed (-want +got):\n%s", diff)
	}
}
