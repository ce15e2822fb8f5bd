package datastore_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/tabbynet/tabby/internal/datastore"
)

func TestCheckOps(t *testing.T) {
	tests := []struct {
		name string
		ops  []datastore.Op
		ok   bool
	}{
		{"empty", nil, true},
		{"distinct keys", []datastore.Op{{Type: datastore.OpCreate, Key: "/a"}, {Type: datastore.OpDelete, Key: "/b", Revision: 2}}, true},
		{"check and write one key", []datastore.Op{{Type: datastore.OpCheck, Key: "/a", Revision: 2}, {Type: datastore.OpUpdate, Key: "/a", Revision: 2}}, true},
		{"two checks of one key", []datastore.Op{{Type: datastore.OpCheck, Key: "/a"}, {Type: datastore.OpCheck, Key: "/a"}}, true},
		{"key written twice", []datastore.Op{{Type: datastore.OpUpdate, Key: "/a", Revision: 2}, {Type: datastore.OpDelete, Key: "/a", Revision: 2}}, false},
		{"empty key", []datastore.Op{{Type: datastore.OpCheck}}, false},
		{"unknown type", []datastore.Op{{Type: 9, Key: "/a"}}, false},
		{"negative type", []datastore.Op{{Type: -1, Key: "/a"}}, false},
		{"most ops", manyOps(datastore.MaxTxnOps), true},
		{"too many ops", manyOps(datastore.MaxTxnOps + 1), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := datastore.CheckOps(tc.ops)
			if (err == nil) != tc.ok {
				t.Errorf("CheckOps: got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestTxnFailure(t *testing.T) {
	kv := &datastore.KV{Key: "/a", Revision: 5}
	tests := []struct {
		name string
		ops  []datastore.Op
		cur  []*datastore.KV
		want error
	}{
		{"create of present key", []datastore.Op{{Type: datastore.OpCreate, Key: "/a"}}, []*datastore.KV{kv}, datastore.ErrExists},
		{"update of missing key", []datastore.Op{{Type: datastore.OpUpdate, Key: "/a", Revision: 5}}, []*datastore.KV{nil}, datastore.ErrNotFound},
		{"stale delete", []datastore.Op{{Type: datastore.OpDelete, Key: "/a", Revision: 4}}, []*datastore.KV{kv}, datastore.ErrConflict},
		{"check absent of present key", []datastore.Op{{Type: datastore.OpCheck, Key: "/a"}}, []*datastore.KV{kv}, datastore.ErrConflict},
		{"first failure decides", []datastore.Op{
			{Type: datastore.OpCheck, Key: "/a", Revision: 4},
			{Type: datastore.OpCreate, Key: "/a"},
		}, []*datastore.KV{kv, kv}, datastore.ErrConflict},
		{"nothing failed", []datastore.Op{{Type: datastore.OpCheck, Key: "/a", Revision: 5}}, []*datastore.KV{kv}, datastore.ErrConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := datastore.TxnFailure(tc.ops, tc.cur); !errors.Is(err, tc.want) {
				t.Errorf("TxnFailure: got %v, want %v", err, tc.want)
			}
		})
	}
}

func manyOps(n int) []datastore.Op {
	ops := make([]datastore.Op, n)
	for i := range ops {
		ops[i] = datastore.Op{Type: datastore.OpCreate, Key: fmt.Sprintf("/k/%d", i)}
	}
	return ops
}
