package memstore_test

import (
	"testing"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/datastoretest"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

var harness = datastoretest.Harness{
	New: func(t *testing.T) datastore.Store { return memstore.New() },
	Compact: func(t *testing.T, s datastore.Store, rev int64) {
		s.(*memstore.Store).Compact(rev)
	},
}

func TestContract(t *testing.T) { datastoretest.Run(t, harness) }

func TestClientContract(t *testing.T) { datastoretest.RunClient(t, harness) }
