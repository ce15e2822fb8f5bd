package etcdtest_test

import (
	"context"
	"testing"

	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
)

func TestNew(t *testing.T) {
	s := etcdtest.New(t)
	ctx := context.Background()
	rev, err := s.Create(ctx, "/a", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := s.Get(ctx, "/a")
	if err != nil || string(kv.Value) != "x" || kv.Revision != rev {
		t.Fatalf("got %+v, %v", kv, err)
	}
}
