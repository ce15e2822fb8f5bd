// Package etcd is the etcd v3 implementation of datastore.Store.
// (Stub: replaced by the full implementation.)
package etcd

import (
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
)

// Config says how to reach an etcd cluster.
type Config struct {
	// Endpoints are URLs: http://host:port, https://host:port or unix:///path.
	Endpoints   []string
	CAFile      string
	CertFile    string
	KeyFile     string
	DialTimeout time.Duration // default 5s
}

// New connects to etcd.
func New(cfg Config) (datastore.Store, error) { panic("not implemented") }
