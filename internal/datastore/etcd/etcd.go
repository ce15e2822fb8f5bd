// Package etcd is the etcd v3 implementation of datastore.Store.
//
// Every write is an etcd transaction guarded by a compare on the key's
// create or mod revision, so an update never overwrites a value it has not
// seen. Failed compares are diagnosed in the same round trip (the Else
// branch reads the keys) and reported as datastore.ErrExists, ErrNotFound
// or ErrConflict; connection failures and timeouts as ErrUnavailable.
//
// It imports datastore and the etcd client only; it must not import the
// etcd server, netlink, nftables or GoBGP.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tabbynet/tabby/internal/datastore"
)

// Default timeouts.
const (
	DefaultDialTimeout = 5 * time.Second
	// DefaultRequestTimeout bounds a request whose ctx has no deadline.
	DefaultRequestTimeout = 30 * time.Second
)

// Config says how to reach an etcd cluster.
type Config struct {
	// Endpoints are URLs: http://host:port, https://host:port or unix:///path.
	Endpoints []string
	// CAFile verifies the servers' certificates (default: system roots);
	// CertFile and KeyFile are this client's certificate, when the servers
	// ask for one.
	CAFile   string
	CertFile string
	KeyFile  string
	// DialTimeout bounds connecting, and New's check that the cluster
	// answers (default 5s).
	DialTimeout time.Duration
	// RequestTimeout bounds every request whose ctx has no deadline of its
	// own (default 30s).
	RequestTimeout time.Duration
}

// Validate checks the endpoints and TLS settings; errors name the field.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("etcd endpoints: none given")
	}
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			return fmt.Errorf("etcd endpoint %q: %v", ep, err)
		}
		switch u.Scheme {
		case "http", "https":
			if u.Host == "" || u.Port() == "" {
				return fmt.Errorf("etcd endpoint %q: want %s://host:port", ep, u.Scheme)
			}
			if u.Path != "" && u.Path != "/" {
				return fmt.Errorf("etcd endpoint %q: unexpected path %q", ep, u.Path)
			}
		case "unix", "unixs":
			if u.Host != "" || u.Path == "" {
				return fmt.Errorf("etcd endpoint %q: want %s:///absolute/path", ep, u.Scheme)
			}
		default:
			return fmt.Errorf("etcd endpoint %q: scheme must be http, https or unix", ep)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("etcd certFile %q, keyFile %q: set both or neither", c.CertFile, c.KeyFile)
	}
	if c.DialTimeout < 0 || c.RequestTimeout < 0 {
		return fmt.Errorf("etcd timeouts: must not be negative (dial %s, request %s)", c.DialTimeout, c.RequestTimeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	return c
}

func (c Config) tlsConfig() (*tls.Config, error) {
	secure := c.CAFile != "" || c.CertFile != ""
	for _, ep := range c.Endpoints {
		secure = secure || strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://")
	}
	if !secure {
		return nil, nil
	}
	if c.CAFile == "" && c.CertFile == "" {
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
	info := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}
	tc, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd TLS (ca %q, cert %q, key %q): %w", c.CAFile, c.CertFile, c.KeyFile, err)
	}
	return tc, nil
}

// Store is a datastore.Store on an etcd cluster.
type Store struct {
	cli *clientv3.Client
	cfg Config
	// watcher opens watch streams: the client, or in tests a wrapper that
	// breaks them.
	watcher clientv3.Watcher
}

var _ datastore.Store = (*Store)(nil)

// New connects to etcd and checks, within DialTimeout, that the cluster
// answers; otherwise it fails with one line wrapping
// datastore.ErrUnavailable.
func New(cfg Config) (datastore.Store, error) {
	s, err := Open(cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Open is New returning the concrete type (for Compact and Client).
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  tc,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: etcd client for %s: %v", datastore.ErrUnavailable, strings.Join(cfg.Endpoints, ", "), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	// A linearizable read needs a leader: the cluster is usable, not just
	// listening.
	if _, err := cli.Get(ctx, "health-check-tabby"); err != nil {
		_ = cli.Close()
		why := causeSuffix(err)
		if why == "" {
			if d := diagnose(cfg.Endpoints, tc); d != "" {
				why = " (" + d + ")"
			}
		}
		return nil, fmt.Errorf("%w: no etcd answered at %s within %s%s",
			datastore.ErrUnavailable, strings.Join(cfg.Endpoints, ", "), cfg.DialTimeout, why)
	}
	return &Store{cli: cli, cfg: cfg, watcher: cli.Watcher}, nil
}

// causeSuffix explains a failed health check when the reason is more than
// "nothing answered" (say, a TLS or auth error).
func causeSuffix(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return ""
	}
	if st, ok := status.FromError(err); ok && (st.Code() == codes.DeadlineExceeded || st.Code() == codes.Unavailable) {
		return ""
	}
	return " (" + oneLine(err.Error()) + ")"
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Client is the underlying etcd client (for tools; the Store owns it).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Close releases the connection.
func (s *Store) Close() error { return s.cli.Close() }

// bound gives a request the default timeout when ctx has no deadline.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

// mapErr turns client errors into datastore errors: connection problems
// and timeouts into ErrUnavailable, compaction into ErrCompacted.
func (s *Store) mapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: %w", what, datastore.ErrUnavailable, err)
	case errors.Is(err, rpctypes.ErrCompacted):
		return fmt.Errorf("%s: %w", what, datastore.ErrCompacted)
	case errors.Is(err, clientv3.ErrNoAvailableEndpoints):
		return fmt.Errorf("%s: %w: %v", what, datastore.ErrUnavailable, err)
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		switch ee.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return fmt.Errorf("%s: %w: %s", what, datastore.ErrUnavailable, ee.Error())
		}
		return fmt.Errorf("%s: %s", what, ee.Error())
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
			return fmt.Errorf("%s: %w: %s", what, datastore.ErrUnavailable, oneLine(st.Message()))
		}
		return fmt.Errorf("%s: %s", what, oneLine(st.Message()))
	}
	return fmt.Errorf("%s: %w", what, err)
}

func toKV(kv interface {
	GetKey() []byte
	GetValue() []byte
	GetModRevision() int64
	GetCreateRevision() int64
}) *datastore.KV {
	return &datastore.KV{
		Key:            string(kv.GetKey()),
		Value:          kv.GetValue(),
		Revision:       kv.GetModRevision(),
		CreateRevision: kv.GetCreateRevision(),
	}
}

// Get returns the key, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (*datastore.KV, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, s.mapErr("get "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%s: %w", key, datastore.ErrNotFound)
	}
	return toKV(resp.Kvs[0]), nil
}

// listPage is how many keys one List request fetches.
const listPage = 1000

// List returns every key under prefix, sorted by key, and the revision the
// listing was taken at. Large listings are read in pages, all at that one
// revision.
func (s *Store) List(ctx context.Context, prefix string) ([]*datastore.KV, int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	end := clientv3.GetPrefixRangeEnd(prefix)
	if prefix == "" {
		prefix, end = "\x00", "\x00"
	}
	var (
		out []*datastore.KV
		rev int64
		key = prefix
	)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, key, opts...)
		if err != nil {
			return nil, 0, s.mapErr("list "+prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			out = append(out, toKV(kv))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Create writes key if absent.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	return s.Txn(ctx, []datastore.Op{{Type: datastore.OpCreate, Key: key, Value: value}})
}

// Update writes key if its revision is still rev.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	return s.Txn(ctx, []datastore.Op{{Type: datastore.OpUpdate, Key: key, Value: value, Revision: rev}})
}

// Delete removes key if its revision is still rev.
func (s *Store) Delete(ctx context.Context, key string, rev int64) error {
	_, err := s.Txn(ctx, []datastore.Op{{Type: datastore.OpDelete, Key: key, Revision: rev}})
	return err
}

// Txn applies ops atomically: one etcd transaction whose If holds one
// compare per op, whose Then holds the writes, and whose Else reads every
// key so a failure is explained without another round trip.
func (s *Store) Txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	if err := datastore.CheckOps(ops); err != nil {
		return 0, err
	}
	var (
		cmps  []clientv3.Cmp
		thens []clientv3.Op
		elses []clientv3.Op
	)
	for _, op := range ops {
		switch op.Type {
		case datastore.OpCreate:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(op.Key), "=", 0))
			thens = append(thens, clientv3.OpPut(op.Key, string(op.Value)))
		case datastore.OpUpdate, datastore.OpDelete:
			rev := op.Revision
			if rev <= 0 {
				// The ModRevision of an absent key is 0: "= 0" would write
				// it. No key has a negative revision, so this always fails
				// and the Else reads tell which error it is.
				rev = -1
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(op.Key), "=", rev))
			if op.Type == datastore.OpUpdate {
				thens = append(thens, clientv3.OpPut(op.Key, string(op.Value)))
			} else {
				thens = append(thens, clientv3.OpDelete(op.Key))
			}
		case datastore.OpCheck:
			if op.Revision == 0 {
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(op.Key), "=", 0))
			} else {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(op.Key), "=", op.Revision))
			}
		}
		elses = append(elses, clientv3.OpGet(op.Key))
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(thens...).Else(elses...).Commit()
	if err != nil {
		return 0, s.mapErr(txnName(ops), err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	cur := make([]*datastore.KV, len(ops))
	for i, r := range resp.Responses {
		if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			cur[i] = toKV(rr.Kvs[0])
		}
	}
	return 0, datastore.TxnFailure(ops, cur)
}

func txnName(ops []datastore.Op) string {
	if len(ops) == 1 {
		return [...]string{"create", "update", "delete", "check"}[ops[0].Type] + " " + ops[0].Key
	}
	return fmt.Sprintf("txn of %d ops", len(ops))
}

// Compact discards the history before rev (as etcd's auto-compaction
// does); watches from older revisions then get ErrCompacted.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	_, err := s.cli.Compact(ctx, rev, clientv3.WithCompactPhysical())
	return s.mapErr(fmt.Sprintf("compact at %d", rev), err)
}

// Revision returns the cluster's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, s.mapErr("read revision", err)
	}
	return resp.Header.Revision, nil
}
