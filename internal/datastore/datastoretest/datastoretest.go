// Package datastoretest is the contract every datastore.Store must honour:
// one test body (Run) that the in-memory store and the etcd store both
// pass, plus a contract test of the typed resource Client (RunClient).
//
// It is for tests only and imports testing and go-cmp; production code
// must not import it.
package datastoretest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore"
)

// Harness gives the contract test stores to break.
type Harness struct {
	// New returns an empty store for one subtest; the harness closes it
	// (in t.Cleanup) unless the test does.
	New func(t *testing.T) datastore.Store
	// Compact discards the history of s before rev. Nil skips the
	// compaction tests.
	Compact func(t *testing.T, s datastore.Store, rev int64)
	// Break cuts s from its backend and restores it (for etcd: stops and
	// restarts the server). Nil skips the tests of watches surviving an
	// outage.
	Break func(t *testing.T, s datastore.Store)
	// Unique makes keys unique per subtest when stores share a backend
	// (etcd stores from one server); memstore leaves it false.
	Unique bool
}

// waitTimeout is how long a test waits for an expected event: generous,
// since the machine is shared; tests never assert on timing.
const waitTimeout = 20 * time.Second

// quiet is how long a test listens to make sure no extra event comes.
const quiet = 300 * time.Millisecond

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Run runs the Store contract against h.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness, s datastore.Store, p string)
	}{
		{"GetMissing", testGetMissing},
		{"CreateGet", testCreateGet},
		{"CreateTwice", testCreateTwice},
		{"Update", testUpdate},
		{"Delete", testDelete},
		{"RevisionsIncrease", testRevisionsIncrease},
		{"List", testList},
		{"ListPrefixIsolation", testListPrefixIsolation},
		{"TxnAllOrNothing", testTxnAllOrNothing},
		{"TxnErrors", testTxnErrors},
		{"TxnBadOps", testTxnBadOps},
		{"NoLostUpdates", testNoLostUpdates},
		{"NoLostUpdatesTxn", testNoLostUpdatesTxn},
		{"CanceledContext", testCanceledContext},
		{"WatchFromPast", testWatchFromPast},
		{"WatchFromNow", testWatchFromNow},
		{"WatchPrefixIsolation", testWatchPrefixIsolation},
		{"WatchDelete", testWatchDelete},
		{"WatchTxn", testWatchTxn},
		{"WatchFromListRevision", testWatchFromListRevision},
		{"WatchCancel", testWatchCancel},
		{"WatchCompacted", testWatchCompacted},
		{"WatchSurvivesOutage", testWatchSurvivesOutage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := h.New(t)
			t.Cleanup(func() { _ = s.Close() })
			p := "/contract/"
			if h.Unique {
				p = "/contract/" + tc.name + "/"
			}
			tc.fn(t, h, s, p)
		})
	}
}

func mustCreate(t *testing.T, s datastore.Store, key, val string) int64 {
	t.Helper()
	rev, err := s.Create(ctxT(t), key, []byte(val))
	if err != nil {
		t.Fatalf("Create(%s): %v", key, err)
	}
	return rev
}

func mustGet(t *testing.T, s datastore.Store, key string) *datastore.KV {
	t.Helper()
	kv, err := s.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	return kv
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func testGetMissing(t *testing.T, _ Harness, s datastore.Store, p string) {
	_, err := s.Get(ctxT(t), p+"missing")
	wantErr(t, "Get(missing)", err, datastore.ErrNotFound)
}

func testCreateGet(t *testing.T, _ Harness, s datastore.Store, p string) {
	rev := mustCreate(t, s, p+"a", "one")
	got := mustGet(t, s, p+"a")
	want := &datastore.KV{Key: p + "a", Value: []byte("one"), Revision: rev, CreateRevision: rev}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get after Create (-want +got):\n%s", diff)
	}
	// Empty values are values.
	mustCreate(t, s, p+"empty", "")
	if got := mustGet(t, s, p+"empty"); len(got.Value) != 0 {
		t.Errorf("Get(empty) value: got %q, want empty", got.Value)
	}
}

func testCreateTwice(t *testing.T, _ Harness, s datastore.Store, p string) {
	rev := mustCreate(t, s, p+"a", "one")
	_, err := s.Create(ctxT(t), p+"a", []byte("two"))
	wantErr(t, "second Create", err, datastore.ErrExists)
	got := mustGet(t, s, p+"a")
	if string(got.Value) != "one" || got.Revision != rev {
		t.Errorf("after failed Create: got %q@%d, want %q@%d", got.Value, got.Revision, "one", rev)
	}
}

func testUpdate(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	rev1 := mustCreate(t, s, p+"a", "one")
	rev2, err := s.Update(ctx, p+"a", []byte("two"), rev1)
	if err != nil {
		t.Fatalf("Update at current revision: %v", err)
	}
	if rev2 <= rev1 {
		t.Errorf("Update revision: got %d, want > %d", rev2, rev1)
	}
	got := mustGet(t, s, p+"a")
	want := &datastore.KV{Key: p + "a", Value: []byte("two"), Revision: rev2, CreateRevision: rev1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get after Update (-want +got):\n%s", diff)
	}
	cases := []struct {
		name string
		key  string
		rev  int64
		want error
	}{
		{"stale revision", p + "a", rev1, datastore.ErrConflict},
		{"future revision", p + "a", rev2 + 100, datastore.ErrConflict},
		{"revision 0 of existing key", p + "a", 0, datastore.ErrConflict},
		{"missing key", p + "missing", rev2, datastore.ErrNotFound},
		{"revision 0 of missing key", p + "missing", 0, datastore.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Update(ctx, tc.key, []byte("lost"), tc.rev)
			wantErr(t, "Update", err, tc.want)
		})
	}
	if got := mustGet(t, s, p+"a"); string(got.Value) != "two" || got.Revision != rev2 {
		t.Errorf("after failed Updates: got %q@%d, want %q@%d", got.Value, got.Revision, "two", rev2)
	}
	if _, err := s.Get(ctx, p+"missing"); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("a failed Update created the key: Get error %v, want %v", err, datastore.ErrNotFound)
	}
}

func testDelete(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	rev1 := mustCreate(t, s, p+"a", "one")
	rev2, err := s.Update(ctx, p+"a", []byte("two"), rev1)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantErr(t, "Delete at stale revision", s.Delete(ctx, p+"a", rev1), datastore.ErrConflict)
	wantErr(t, "Delete at revision 0", s.Delete(ctx, p+"a", 0), datastore.ErrConflict)
	wantErr(t, "Delete of missing key", s.Delete(ctx, p+"missing", rev2), datastore.ErrNotFound)
	mustGet(t, s, p+"a")
	if err := s.Delete(ctx, p+"a", rev2); err != nil {
		t.Fatalf("Delete at current revision: %v", err)
	}
	_, err = s.Get(ctx, p+"a")
	wantErr(t, "Get after Delete", err, datastore.ErrNotFound)
	wantErr(t, "second Delete", s.Delete(ctx, p+"a", rev2), datastore.ErrNotFound)
	// The key can be created again, with a new create revision.
	rev3 := mustCreate(t, s, p+"a", "three")
	if got := mustGet(t, s, p+"a"); got.CreateRevision != rev3 || rev3 <= rev2 {
		t.Errorf("re-created key: got create revision %d, want %d (> %d)", got.CreateRevision, rev3, rev2)
	}
}

func testRevisionsIncrease(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	last := int64(0)
	check := func(what string, rev int64) {
		t.Helper()
		if rev <= last {
			t.Fatalf("%s: got revision %d, want > %d", what, rev, last)
		}
		last = rev
	}
	a := mustCreate(t, s, p+"a", "1")
	check("Create a", a)
	b := mustCreate(t, s, p+"b", "1")
	check("Create b", b)
	a2, err := s.Update(ctx, p+"a", []byte("2"), a)
	if err != nil {
		t.Fatal(err)
	}
	check("Update a", a2)
	tx, err := s.Txn(ctx, []datastore.Op{{Type: datastore.OpUpdate, Key: p + "b", Value: []byte("2"), Revision: b}})
	if err != nil {
		t.Fatal(err)
	}
	check("Txn", tx)
	_, rev, err := s.List(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if rev < last {
		t.Errorf("List revision: got %d, want >= %d", rev, last)
	}
}

func testList(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	kvs, _, err := s.List(ctx, p)
	if err != nil || len(kvs) != 0 {
		t.Fatalf("List of empty prefix: got %d keys, %v; want none", len(kvs), err)
	}
	var want []*datastore.KV
	var last int64
	for _, k := range []string{"c", "a", "b/x", "b/y"} {
		last = mustCreate(t, s, p+k, "v-"+k)
	}
	for _, k := range []string{"a", "b/x", "b/y", "c"} {
		want = append(want, mustGet(t, s, p+k))
	}
	got, rev, err := s.List(ctx, p)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if rev < last {
		t.Errorf("List revision: got %d, want >= %d", rev, last)
	}
	got, _, err = s.List(ctx, p+"b/")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[1:3], got); diff != "" {
		t.Errorf("List(b/) (-want +got):\n%s", diff)
	}
}

func testListPrefixIsolation(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	for _, k := range []string{p + "ns/a", p + "ns/b", p + "nsx/a", p + "ns", p + "n"} {
		mustCreate(t, s, k, "v")
	}
	got, _, err := s.List(ctx, p+"ns/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range got {
		keys = append(keys, kv.Key)
	}
	if diff := cmp.Diff([]string{p + "ns/a", p + "ns/b"}, keys); diff != "" {
		t.Errorf("List(ns/) keys (-want +got):\n%s", diff)
	}
}

func testTxnAllOrNothing(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	ra := mustCreate(t, s, p+"a", "a1")
	rb := mustCreate(t, s, p+"b", "b1")
	rc := mustCreate(t, s, p+"c", "c1")
	before, _, err := s.List(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	// Every op's condition holds but the last: nothing may change.
	failing := []struct {
		name string
		last datastore.Op
		want error
	}{
		{"stale check", datastore.Op{Type: datastore.OpCheck, Key: p + "c", Revision: rc - 1}, datastore.ErrConflict},
		{"check absent of present key", datastore.Op{Type: datastore.OpCheck, Key: p + "c"}, datastore.ErrConflict},
		{"check of missing key", datastore.Op{Type: datastore.OpCheck, Key: p + "zz", Revision: rc}, datastore.ErrConflict},
		{"create of present key", datastore.Op{Type: datastore.OpCreate, Key: p + "c", Value: []byte("x")}, datastore.ErrExists},
		{"stale update", datastore.Op{Type: datastore.OpUpdate, Key: p + "c", Value: []byte("x"), Revision: rc + 1}, datastore.ErrConflict},
		{"delete of missing key", datastore.Op{Type: datastore.OpDelete, Key: p + "zz", Revision: rc}, datastore.ErrNotFound},
	}
	for _, tc := range failing {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Txn(ctx, []datastore.Op{
				{Type: datastore.OpUpdate, Key: p + "a", Value: []byte("a2"), Revision: ra},
				{Type: datastore.OpDelete, Key: p + "b", Revision: rb},
				{Type: datastore.OpCreate, Key: p + "new", Value: []byte("n")},
				tc.last,
			})
			wantErr(t, "Txn", err, tc.want)
			after, _, err := s.List(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("a failed Txn changed the store (-before +after):\n%s", diff)
			}
		})
	}
	rev, err := s.Txn(ctx, []datastore.Op{
		{Type: datastore.OpUpdate, Key: p + "a", Value: []byte("a2"), Revision: ra},
		{Type: datastore.OpDelete, Key: p + "b", Revision: rb},
		{Type: datastore.OpCreate, Key: p + "new", Value: []byte("n")},
		{Type: datastore.OpCheck, Key: p + "c", Revision: rc},
		{Type: datastore.OpCheck, Key: p + "absent"},
	})
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	got, _, err := s.List(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []*datastore.KV{
		{Key: p + "a", Value: []byte("a2"), Revision: rev, CreateRevision: ra},
		{Key: p + "c", Value: []byte("c1"), Revision: rc, CreateRevision: rc},
		{Key: p + "new", Value: []byte("n"), Revision: rev, CreateRevision: rev},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after Txn (-want +got):\n%s", diff)
	}
	// A transaction of checks only writes nothing.
	rev2, err := s.Txn(ctx, []datastore.Op{{Type: datastore.OpCheck, Key: p + "a", Revision: rev}})
	if err != nil {
		t.Fatalf("check-only Txn: %v", err)
	}
	if rev2 != rev {
		t.Errorf("check-only Txn revision: got %d, want %d (nothing written)", rev2, rev)
	}
}

func testTxnErrors(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	ra := mustCreate(t, s, p+"a", "a1")
	cases := []struct {
		name string
		ops  []datastore.Op
		want error
	}{
		{"create existing", []datastore.Op{{Type: datastore.OpCreate, Key: p + "a"}}, datastore.ErrExists},
		{"update missing", []datastore.Op{{Type: datastore.OpUpdate, Key: p + "b", Revision: ra}}, datastore.ErrNotFound},
		{"update stale", []datastore.Op{{Type: datastore.OpUpdate, Key: p + "a", Revision: ra - 1}}, datastore.ErrConflict},
		{"delete missing", []datastore.Op{{Type: datastore.OpDelete, Key: p + "b", Revision: ra}}, datastore.ErrNotFound},
		{"delete stale", []datastore.Op{{Type: datastore.OpDelete, Key: p + "a", Revision: ra + 1}}, datastore.ErrConflict},
		{"check absent", []datastore.Op{{Type: datastore.OpCheck, Key: p + "a"}}, datastore.ErrConflict},
		{"check stale", []datastore.Op{{Type: datastore.OpCheck, Key: p + "a", Revision: ra + 1}}, datastore.ErrConflict},
		{"check missing", []datastore.Op{{Type: datastore.OpCheck, Key: p + "b", Revision: ra}}, datastore.ErrConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Txn(ctx, tc.ops)
			wantErr(t, "Txn", err, tc.want)
		})
	}
}

func testTxnBadOps(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	ra := mustCreate(t, s, p+"a", "a1")
	cases := []struct {
		name string
		ops  []datastore.Op
	}{
		{"key written twice", []datastore.Op{
			{Type: datastore.OpCreate, Key: p + "b", Value: []byte("1")},
			{Type: datastore.OpUpdate, Key: p + "a", Value: []byte("2"), Revision: ra},
			{Type: datastore.OpDelete, Key: p + "a", Revision: ra},
		}},
		{"empty key", []datastore.Op{{Type: datastore.OpCreate, Key: "", Value: []byte("1")}}},
		{"unknown op type", []datastore.Op{{Type: datastore.OpType(42), Key: p + "a"}}},
		{"too many ops", append(bigTxn(p, datastore.MaxTxnOps), datastore.Op{Type: datastore.OpCreate, Key: p + "b"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Txn(ctx, tc.ops); err == nil {
				t.Fatalf("Txn: got no error, want one")
			}
			if _, err := s.Get(ctx, p+"b"); !errors.Is(err, datastore.ErrNotFound) {
				t.Errorf("a rejected Txn wrote: Get(b) error %v, want %v", err, datastore.ErrNotFound)
			}
			if got := mustGet(t, s, p+"a"); got.Revision != ra {
				t.Errorf("a rejected Txn wrote a: revision %d, want %d", got.Revision, ra)
			}
		})
	}
	// The largest transaction allowed applies.
	if _, err := s.Txn(ctx, bigTxn(p, datastore.MaxTxnOps)); err != nil {
		t.Errorf("Txn of %d ops: %v", datastore.MaxTxnOps, err)
	}
	// A key may be checked and written in one transaction.
	if _, err := s.Txn(ctx, []datastore.Op{
		{Type: datastore.OpCheck, Key: p + "a", Revision: ra},
		{Type: datastore.OpUpdate, Key: p + "a", Value: []byte("2"), Revision: ra},
	}); err != nil {
		t.Errorf("Txn checking and updating one key: %v", err)
	}
}

func bigTxn(p string, n int) []datastore.Op {
	ops := make([]datastore.Op, n)
	for i := range ops {
		ops[i] = datastore.Op{Type: datastore.OpCreate, Key: fmt.Sprintf("%sbig/%03d", p, i), Value: []byte("v")}
	}
	return ops
}

// increment adds one to the counter at key with a compare-and-swap loop,
// the way every read-modify-write in Tabby is written.
func increment(ctx context.Context, s datastore.Store, key string) error {
	var err error
	for range datastore.MaxRetries {
		var kv *datastore.KV
		if kv, err = s.Get(ctx, key); err != nil {
			return err
		}
		n, perr := strconv.Atoi(string(kv.Value))
		if perr != nil {
			return perr
		}
		_, err = s.Update(ctx, key, []byte(strconv.Itoa(n+1)), kv.Revision)
		if !errors.Is(err, datastore.ErrConflict) {
			return err
		}
	}
	return err
}

const (
	workers    = 6
	increments = 20
)

func testNoLostUpdates(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	mustCreate(t, s, p+"counter", "0")
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range increments {
				if err := increment(ctx, s, p+"counter"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("increment: %v", err)
	}
	if got := mustGet(t, s, p+"counter"); string(got.Value) != strconv.Itoa(workers*increments) {
		t.Errorf("counter after %d×%d increments: got %s, want %d", workers, increments, got.Value, workers*increments)
	}
}

// testNoLostUpdatesTxn moves units between two keys in transactions; the
// sum must stay constant and every move must count.
func testNoLostUpdatesTxn(t *testing.T, _ Harness, s datastore.Store, p string) {
	ctx := ctxT(t)
	const total = 1000
	mustCreate(t, s, p+"x", strconv.Itoa(total))
	mustCreate(t, s, p+"y", "0")
	mustCreate(t, s, p+"moves", "0")
	move := func() error {
		for range datastore.MaxRetries {
			kvs, _, err := s.List(ctx, p)
			if err != nil {
				return err
			}
			vals := map[string]*datastore.KV{}
			for _, kv := range kvs {
				vals[kv.Key] = kv
			}
			atoi := func(k string) int { n, _ := strconv.Atoi(string(vals[k].Value)); return n }
			x, y, m := vals[p+"x"], vals[p+"y"], vals[p+"moves"]
			_, err = s.Txn(ctx, []datastore.Op{
				{Type: datastore.OpUpdate, Key: x.Key, Value: []byte(strconv.Itoa(atoi(x.Key) - 1)), Revision: x.Revision},
				{Type: datastore.OpUpdate, Key: y.Key, Value: []byte(strconv.Itoa(atoi(y.Key) + 1)), Revision: y.Revision},
				{Type: datastore.OpUpdate, Key: m.Key, Value: []byte(strconv.Itoa(atoi(m.Key) + 1)), Revision: m.Revision},
			})
			if !errors.Is(err, datastore.ErrConflict) {
				return err
			}
		}
		return fmt.Errorf("move: gave up after %d conflicts", datastore.MaxRetries)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range increments {
				if err := move(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("move: %v", err)
	}
	n := workers * increments
	got := []string{string(mustGet(t, s, p+"x").Value), string(mustGet(t, s, p+"y").Value), string(mustGet(t, s, p+"moves").Value)}
	want := []string{strconv.Itoa(total - n), strconv.Itoa(n), strconv.Itoa(n)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("x, y, moves after %d moves (-want +got):\n%s", n, diff)
	}
}

func testCanceledContext(t *testing.T, _ Harness, s datastore.Store, p string) {
	mustCreate(t, s, p+"a", "1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Get(ctx, p+"a")
	wantErr(t, "Get with canceled ctx", err, datastore.ErrUnavailable)
	_, err = s.Create(ctx, p+"b", nil)
	wantErr(t, "Create with canceled ctx", err, datastore.ErrUnavailable)
	_, _, err = s.List(ctx, p)
	wantErr(t, "List with canceled ctx", err, datastore.ErrUnavailable)
}
