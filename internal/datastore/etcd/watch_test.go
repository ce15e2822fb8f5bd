package etcd_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
)

// breakingWatcher ends every watch stream after a few responses, the way
// a lost leader or a dropped connection does, with or without an error.
type breakingWatcher struct {
	clientv3.Watcher
	after     int
	withError bool
	opened    atomic.Int32
}

func (b *breakingWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	b.opened.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	in := b.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		defer cancel()
		n := 0
		for resp := range in {
			if n == b.after {
				if b.withError {
					resp = clientv3.WatchResponse{Canceled: true, Header: resp.Header}
					resp.Events = nil
					select {
					case out <- resp:
					case <-ctx.Done():
					}
				}
				return
			}
			if len(resp.Events) > 0 {
				n++
			}
			select {
			case out <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// TestWatchResumesAfterBrokenStream breaks the watch stream after every
// response while writers keep writing: the consumer must still see every
// change exactly once, in order.
func TestWatchResumesAfterBrokenStream(t *testing.T) {
	_, cfg := etcdtest.NewServer(t)
	for _, withError := range []bool{false, true} {
		t.Run(fmt.Sprintf("withError=%v", withError), func(t *testing.T) {
			st, err := etcd.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			bw := &breakingWatcher{after: 1, withError: withError}
			etcd.WrapWatcher(st, func(w clientv3.Watcher) clientv3.Watcher { bw.Watcher = w; return bw })
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			prefix := fmt.Sprintf("/resume/%v/", withError)
			w := st.Watch(ctx, prefix, 0)

			// The writers write at least minWrites each, and go on (up to
			// maxWrites) until the stream has been broken a few times: on
			// a loaded machine a slow reader lets the server coalesce many
			// events into one response, leaving little to break.
			const writers, minWrites, maxWrites = 3, 10, 200
			// Read while the writers write: a consumer that waits lets
			// the server coalesce the events into a response or two,
			// and then there is nothing to break.
			var (
				got     []int64
				readErr error
				total   = make(chan int, 1) // known once the writers are done
			)
			readDone := make(chan struct{})
			go func() {
				defer close(readDone)
				want := -1
				for want < 0 || len(got) < want {
					select {
					case n := <-total:
						want = n
					case e, ok := <-w:
						if !ok || e.Type == datastore.EventError {
							readErr = fmt.Errorf("watch ended after %d events: %v", len(got), e.Err)
							return
						}
						got = append(got, e.KV.Revision)
					case <-ctx.Done():
						readErr = fmt.Errorf("got %d of %d events", len(got), want)
						return
					}
				}
			}()
			var mu sync.Mutex
			var want []int64
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() {
					for j := 0; j < maxWrites && (j < minWrites || bw.opened.Load() < 4); j++ {
						rev, err := st.Create(ctx, fmt.Sprintf("%sw%d/%d", prefix, i, j), []byte("x"))
						if err != nil {
							t.Errorf("Create: %v", err)
							return
						}
						mu.Lock()
						want = append(want, rev)
						mu.Unlock()
						time.Sleep(20 * time.Millisecond) // spread writes over many responses
					}
				})
			}
			// A transaction's events share a revision: a break must not
			// split them.
			rev, err := st.Txn(ctx, []datastore.Op{
				{Type: datastore.OpCreate, Key: prefix + "t/1"},
				{Type: datastore.OpCreate, Key: prefix + "t/2"},
			})
			if err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			want = append(want, rev, rev)
			slicesSort(want)
			total <- len(want)
			<-readDone
			if readErr != nil {
				t.Fatal(readErr)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("event revisions (-want +got):\n%s", diff)
			}
			if n := bw.opened.Load(); n < 3 {
				t.Errorf("watch streams opened: got %d, want several (the test did not break them)", n)
			}
		})
	}
}

func slicesSort(s []int64) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestNoGoroutineLeak closes stores with watches open (ended by ctx, by
// Close, or never read) and checks no goroutine of this package is left.
func TestNoGoroutineLeak(t *testing.T) {
	_, cfg := etcdtest.NewServer(t)
	for range 3 {
		s, err := etcd.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		w1 := s.Watch(ctx, "/leak/", 0)
		_ = s.Watch(context.Background(), "/leak/", 0) // never read; ends with Close
		if _, err := s.Create(ctx, fmt.Sprintf("/leak/%p", s), nil); err != nil {
			t.Fatal(err)
		}
		<-w1
		cancel()
		_ = s.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "internal/datastore/etcd.(*Store)") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines of the etcd store still running after Close:\n%s", stacks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
