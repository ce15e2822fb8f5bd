package datastore

import (
	"context"

	"github.com/tabbynet/tabby/internal/api"
)

// KeyPrefix is the root of every key Tabby writes.
const KeyPrefix = "/tabby/v1/"

// IPAMPrefix is the root of IPAM's own keys (blocks, affinities, handles).
const IPAMPrefix = KeyPrefix + "ipam/"

// ElectionPrefix is the root of leader elections' lease-bound keys. It is
// outside KeyPrefix, so nothing that lists or exports resources sees them.
const ElectionPrefix = "/tabby/elections/"

// ResourceEvent is one change of a resource seen by Client.Watch.
type ResourceEvent struct {
	Type EventType
	// Resource is the new value; for EventDelete the last known value (or
	// metadata only). For an EventPut whose value cannot be decoded, Err
	// is set and Resource has only the name and namespace (from the key).
	// Reflector turns such a put into a delete and goes on.
	Resource api.Resource
	Revision int64
	Err      error
}

// Client stores api resources in a Store under
// /tabby/v1/<plural>/[<namespace>/]<name>, JSON-encoded. Writes validate
// and default the resource first, and are compare-and-swap on the
// resource's ResourceVersion.
type Client struct {
	Store Store
}

// NewClient returns a resource client over s.
func NewClient(s Store) *Client { return &Client{Store: s} }

// ResourceKey is the datastore key of a resource.
func ResourceKey(k api.KindInfo, namespace, name string) string {
	if k.Scope == api.Namespaced {
		if namespace == "" {
			namespace = api.DefaultNamespace
		}
		return KeyPrefix + k.Plural + "/" + namespace + "/" + name
	}
	return KeyPrefix + k.Plural + "/" + name
}

// The following methods are implemented in resources.go.
var _ interface {
	Get(ctx context.Context, kind, namespace, name string) (api.Resource, error)
	List(ctx context.Context, kind, namespace string) ([]api.Resource, int64, error)
	Create(ctx context.Context, r api.Resource) (api.Resource, error)
	Update(ctx context.Context, r api.Resource) (api.Resource, error)
	Apply(ctx context.Context, r api.Resource) (api.Resource, bool, error)
	Delete(ctx context.Context, kind, namespace, name, resourceVersion string) (api.Resource, error)
	Watch(ctx context.Context, kind string, fromRev int64) <-chan ResourceEvent
} = (*Client)(nil)
