package etcd_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/embedded"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
)

// benchStore returns a store on an embedded server; fsync says whether
// the server syncs its WAL to disk (as in production) or not (as in
// tests).
func benchStore(b *testing.B, fsync bool) datastore.Store {
	b.Helper()
	_, cfg := etcdtest.NewServerWith(b, etcdtest.Options{Config: func(c *embedded.Config) {
		c.UnsafeNoFsync = !fsync
	}})
	s, err := etcd.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func modes(b *testing.B, fn func(b *testing.B, s datastore.Store)) {
	for _, fsync := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) { fn(b, benchStore(b, fsync)) })
	}
}

// BenchmarkCreate measures one Create round trip (a transaction guarded
// by "key absent").
func BenchmarkCreate(b *testing.B) {
	modes(b, func(b *testing.B, s datastore.Store) {
		ctx := context.Background()
		val := []byte(`{"kind":"IPPool","spec":{"cidr":"10.0.0.0/16"}}`)
		i := 0
		for b.Loop() {
			if _, err := s.Create(ctx, fmt.Sprintf("/bench/create/%d", i), val); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkUpdate measures one compare-and-swap Update round trip.
func BenchmarkUpdate(b *testing.B) {
	modes(b, func(b *testing.B, s datastore.Store) {
		ctx := context.Background()
		val := []byte(`{"kind":"IPPool","spec":{"cidr":"10.0.0.0/16"}}`)
		rev, err := s.Create(ctx, "/bench/update", val)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if rev, err = s.Update(ctx, "/bench/update", val, rev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGet measures one linearizable read.
func BenchmarkGet(b *testing.B) {
	s := benchStore(b, false)
	ctx := context.Background()
	if _, err := s.Create(ctx, "/bench/get", []byte("v")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Get(ctx, "/bench/get"); err != nil {
			b.Fatal(err)
		}
	}
}
