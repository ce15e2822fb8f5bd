package datastoretest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore"
)

// ev is the comparable summary of a datastore.Event.
type ev struct {
	Type    datastore.EventType
	Key     string
	Value   string
	Rev     int64
	Prev    string
	PrevRev int64 // 0: no Prev
}

func summarize(e datastore.Event) ev {
	out := ev{Type: e.Type, Key: e.KV.Key, Value: string(e.KV.Value), Rev: e.KV.Revision}
	if e.Prev != nil {
		out.Prev, out.PrevRev = string(e.Prev.Value), e.Prev.Revision
	}
	return out
}

func put(key, val string, rev int64) ev {
	return ev{Type: datastore.EventPut, Key: key, Value: val, Rev: rev}
}

func (e ev) prev(val string, rev int64) ev { e.Prev, e.PrevRev = val, rev; return e }

func del(key string, rev int64, prevVal string, prevRev int64) ev {
	return ev{Type: datastore.EventDelete, Key: key, Rev: rev, Prev: prevVal, PrevRev: prevRev}
}

// watch starts a watch that ends with the test.
func watch(t *testing.T, s datastore.Store, prefix string, from int64) <-chan datastore.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return s.Watch(ctx, prefix, from)
}

// expect reads len(want) events and compares them with want.
func expect(t *testing.T, ch <-chan datastore.Event, want ...ev) {
	t.Helper()
	var got []ev
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for len(got) < len(want) {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d events %v, want %v", len(got), got, want)
			}
			if e.Type == datastore.EventError {
				t.Fatalf("watch error after %d events: %v", len(got), e.Err)
			}
			got = append(got, summarize(e))
		case <-timeout.C:
			t.Fatalf("waited %s: got %d events %v, want %v", waitTimeout, len(got), got, want)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("watch events (-want +got):\n%s", diff)
	}
}

// next returns the next event.
func next(t *testing.T, ch <-chan datastore.Event) datastore.Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatalf("watch closed, want an event")
		}
		return e
	case <-time.After(waitTimeout):
		t.Fatalf("no watch event in %s", waitTimeout)
	}
	panic("unreachable")
}

// expectNone checks that no event arrives for a moment.
func expectNone(t *testing.T, ch <-chan datastore.Event) {
	t.Helper()
	select {
	case e, ok := <-ch:
		if ok {
			t.Fatalf("unexpected watch event %+v (err %v)", summarize(e), e.Err)
		}
		t.Fatalf("watch closed unexpectedly")
	case <-time.After(quiet):
	}
}

func testWatchFromPast(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	r1 := mustCreate(t, s, p+"a", "1")
	r2, err := s.Update(ctx, p+"a", []byte("2"), r1)
	if err != nil {
		t.Fatal(err)
	}
	r3 := mustCreate(t, s, p+"b", "1")
	if err := s.Delete(ctx, p+"b", r3); err != nil {
		t.Fatal(err)
	}
	_, r4, err := s.List(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	all := []ev{
		put(p+"a", "1", r1),
		put(p+"a", "2", r2).prev("1", r1),
		put(p+"b", "1", r3),
		del(p+"b", r4, "1", r3),
	}
	expect(t, watch(t, s, p, r1), all...)
	w := watch(t, s, p, r2)
	expect(t, w, all[1:]...)
	expectNone(t, w)
	r5 := mustCreate(t, s, p+"c", "1")
	expect(t, w, put(p+"c", "1", r5))
}

func testWatchFromNow(t *testing.T, _ Harness, s datastore.Store, p string) {
	mustCreate(t, s, p+"before", "1")
	w := watch(t, s, p, 0)
	r := mustCreate(t, s, p+"after", "1")
	expect(t, w, put(p+"after", "1", r))
	expectNone(t, w)
}

func testWatchPrefixIsolation(t *testing.T, _ Harness, s datastore.Store, p string) {
	w := watch(t, s, p+"ns/", 0)
	mustCreate(t, s, p+"nsx/a", "1")
	mustCreate(t, s, p+"ns", "1")
	mustCreate(t, s, p+"n", "1")
	r := mustCreate(t, s, p+"ns/a", "1")
	expect(t, w, put(p+"ns/a", "1", r))
	expectNone(t, w)
}

func testWatchDelete(t *testing.T, _ Harness, s datastore.Store, p string) {
	r1 := mustCreate(t, s, p+"a", "old")
	w := watch(t, s, p, 0)
	if err := s.Delete(ctxT(t), p+"a", r1); err != nil {
		t.Fatal(err)
	}
	e := next(t, w)
	if e.Type != datastore.EventDelete || e.KV.Key != p+"a" || e.KV.Value != nil || e.KV.Revision <= r1 {
		t.Fatalf("delete event: got %+v, want a delete of %s after revision %d with no value", summarize(e), p+"a", r1)
	}
	if e.Prev == nil || string(e.Prev.Value) != "old" || e.Prev.Revision != r1 || e.Prev.Key != p+"a" {
		t.Errorf("delete event Prev: got %+v, want %q at %d", e.Prev, "old", r1)
	}
}

func testWatchTxn(t *testing.T, _ Harness, s datastore.Store, p string) {
	ra := mustCreate(t, s, p+"a", "1")
	w := watch(t, s, p, 0)
	rev, err := s.Txn(ctxT(t), []datastore.Op{
		{Type: datastore.OpCreate, Key: p + "b", Value: []byte("1")},
		{Type: datastore.OpUpdate, Key: p + "a", Value: []byte("2"), Revision: ra},
	})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, w, put(p+"b", "1", rev), put(p+"a", "2", rev).prev("1", ra))
}

func testWatchFromListRevision(t *testing.T, _ Harness, s datastore.Store, p string) {
	mustCreate(t, s, p+"a", "1")
	_, rev, err := s.List(ctxT(t), p)
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, s, p, rev+1)
	r := mustCreate(t, s, p+"b", "1")
	expect(t, w, put(p+"b", "1", r))
	expectNone(t, w)
}

func testWatchCancel(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx, cancel := context.WithCancel(context.Background())
	w := s.Watch(ctx, p, 0)
	r := mustCreate(t, s, p+"a", "1")
	expect(t, w, put(p+"a", "1", r))
	cancel()
	timeout := time.After(waitTimeout)
	for {
		select {
		case _, ok := <-w:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("watch still open %s after its ctx ended", waitTimeout)
		}
	}
}

func testWatchCompacted(t *testing.T, h Harness, s datastore.Store, p string) {
	if h.Compact == nil {
		t.Skip("harness cannot compact")
	}
	ctx := ctxT(t)
	r1 := mustCreate(t, s, p+"a", "1")
	r2, err := s.Update(ctx, p+"a", []byte("2"), r1)
	if err != nil {
		t.Fatal(err)
	}
	r3, err := s.Update(ctx, p+"a", []byte("3"), r2)
	if err != nil {
		t.Fatal(err)
	}
	h.Compact(t, s, r3)
	w := watch(t, s, p, r1)
	select {
	case e, ok := <-w:
		if !ok || e.Type != datastore.EventError || !errors.Is(e.Err, datastore.ErrCompacted) {
			t.Fatalf("watch from compacted revision: got %+v (open %v, err %v), want an EventError with %v", summarize(e), ok, e.Err, datastore.ErrCompacted)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("watch from compacted revision: no event in %s", waitTimeout)
	}
	select {
	case _, ok := <-w:
		if ok {
			t.Fatalf("watch still open after EventError")
		}
	case <-time.After(waitTimeout):
		t.Fatalf("watch still open %s after EventError", waitTimeout)
	}
	// The compaction revision itself is still there; List gives a revision
	// to watch from again.
	// (Prev of the first event may be unknown: its revision is compacted.)
	e := next(t, watch(t, s, p, r3))
	if got, want := summarize(e), put(p+"a", "3", r3); got.Type != want.Type || got.Key != want.Key || got.Value != want.Value || got.Rev != want.Rev {
		t.Fatalf("watch from compaction revision: got %+v, want %+v", got, want)
	}
	_, rev, err := s.List(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	w = watch(t, s, p, rev+1)
	r4, err := s.Update(ctx, p+"a", []byte("4"), r3)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, w, put(p+"a", "4", r4).prev("3", r3))
}

// testWatchSurvivesOutage breaks the store's backend under two watches
// (one from now, one from an old revision) and checks that each resumes
// exactly after the last event it delivered: nothing lost, nothing twice.
func testWatchSurvivesOutage(t *testing.T, h Harness, s datastore.Store, p string) {
	if h.Break == nil {
		t.Skip("harness cannot break the store")
	}
	ctx := ctxT(t)
	r0 := mustCreate(t, s, p+"old", "0")
	now := watch(t, s, p, 0)
	past := watch(t, s, p, r0)
	r1 := mustCreate(t, s, p+"a", "1")
	expect(t, now, put(p+"a", "1", r1))
	expect(t, past, put(p+"old", "0", r0), put(p+"a", "1", r1))

	h.Break(t, s)

	// Right after the restart the watches may not have reconnected yet:
	// these writes must still reach them, once.
	var r2 int64
	deadline := time.Now().Add(waitTimeout)
	for {
		var err error
		if r2, err = s.Create(ctx, p+"b", []byte("2")); err == nil {
			break
		}
		if !errors.Is(err, datastore.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Create after outage: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r3, err := s.Update(ctx, p+"a", []byte("3"), r1)
	if err != nil {
		t.Fatalf("Update after outage: %v", err)
	}
	want := []ev{put(p+"b", "2", r2), put(p+"a", "3", r3).prev("1", r1)}
	expect(t, now, want...)
	expect(t, past, want...)
	expectNone(t, now)
	expectNone(t, past)

	// A second outage with nothing in between: still exactly once.
	h.Break(t, s)
	var r4 int64
	deadline = time.Now().Add(waitTimeout)
	for {
		if r4, err = s.Update(ctx, p+"b", []byte("4"), r2); err == nil {
			break
		}
		if !errors.Is(err, datastore.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Update after second outage: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	expect(t, now, put(p+"b", "4", r4).prev("2", r2))
	expect(t, past, put(p+"b", "4", r4).prev("2", r2))
	expectNone(t, now)
}
