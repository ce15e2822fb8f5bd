// Package datastore defines the Store every Tabby component keeps its shared
// state in: a revisioned key-value interface whose every write is a
// compare-and-swap, plus a typed resource client on top of it.
//
// Implementations live in subpackages (etcd: etcd v3; memstore: in memory)
// and pass the same contract test (datastoretest). This package imports
// internal/api only; it must not import etcd, netlink, nftables or GoBGP.
package datastore

import (
	"context"
	"errors"
)

// Errors returned by every Store. Implementations wrap them; test with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrConflict    = errors.New("revision conflict: the value was changed since it was read")
	ErrCompacted   = errors.New("revision compacted")
	ErrUnavailable = errors.New("datastore unavailable")
)

// KV is one stored key.
type KV struct {
	Key   string
	Value []byte
	// Revision is the key's modification revision: pass it back to Update
	// or Delete to make the write conditional on nothing having changed.
	Revision int64
	// CreateRevision is the revision at which the key was created.
	CreateRevision int64
}

// OpType is the kind of a transaction operation.
type OpType int

const (
	OpCreate OpType = iota // key must be absent
	OpUpdate               // key must exist at Revision
	OpDelete               // key must exist at Revision
	OpCheck                // key must exist at Revision (Revision 0: key must be absent); nothing written
)

// Op is one operation of an atomic transaction.
type Op struct {
	Type     OpType
	Key      string
	Value    []byte
	Revision int64
}

// EventType says what happened to a key.
type EventType int

const (
	EventPut EventType = iota
	EventDelete
	// EventError carries Err; the watch channel closes after it. After
	// ErrCompacted a consumer must List again and watch from that revision.
	EventError
)

// Event is one change seen by a watch.
type Event struct {
	Type EventType
	// KV is the new value (for EventDelete: the key, with Value nil, and
	// the revision of the delete).
	KV KV
	// Prev is the value before the change, when known.
	Prev *KV
	Err  error
}

// Store is a revisioned key-value store whose every write is a
// compare-and-swap. Revisions are global and increase with every write.
type Store interface {
	// Get returns the key, or ErrNotFound.
	Get(ctx context.Context, key string) (*KV, error)
	// List returns every key under prefix, sorted by key, and the store
	// revision the listing was taken at (the revision to watch from + 1).
	List(ctx context.Context, prefix string) ([]*KV, int64, error)
	// Create writes key if absent (ErrExists otherwise) and returns its revision.
	Create(ctx context.Context, key string, value []byte) (int64, error)
	// Update writes key if its revision is still rev: ErrConflict if it
	// changed, ErrNotFound if it is gone.
	Update(ctx context.Context, key string, value []byte, rev int64) (int64, error)
	// Delete removes key if its revision is still rev (ErrConflict,
	// ErrNotFound otherwise).
	Delete(ctx context.Context, key string, rev int64) error
	// Txn applies every op atomically, or none. On a failed condition it
	// returns ErrConflict (or ErrExists for a failed OpCreate). It returns
	// the revision of the transaction.
	Txn(ctx context.Context, ops []Op) (int64, error)
	// Watch streams changes under prefix from revision fromRev (inclusive;
	// 0 means "from now"). It survives broken connections by resuming
	// after the last revision seen. The channel closes when ctx ends or
	// after an EventError.
	Watch(ctx context.Context, prefix string, fromRev int64) <-chan Event
	// Close releases the store's connections.
	Close() error
}

// MaxRetries bounds every read-modify-write loop over the Store: a caller
// that loses the compare-and-swap this many times in a row gives up with
// the last ErrConflict instead of spinning.
const MaxRetries = 100
