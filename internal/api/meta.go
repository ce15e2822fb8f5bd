package api

import "time"

// API versions accepted in manifests. Resources are always written back as
// APIVersion; CalicoAPIVersion is accepted on input for the kinds we share
// with Calico so existing manifests apply unchanged.
const (
	APIVersion       = "tabby.dev/v1"
	CalicoAPIVersion = "projectcalico.org/v3"
)

// DefaultNamespace is the namespace of namespaced resources that name none.
const DefaultNamespace = "default"

// TypeMeta names the schema of a resource document.
type TypeMeta struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
}

// ObjectMeta is the metadata every resource carries.
type ObjectMeta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	// ResourceVersion is the datastore revision the resource was read at.
	// An update carrying a stale ResourceVersion is rejected as a conflict.
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	UID               string            `json:"uid,omitempty"`
	CreationTimestamp *time.Time        `json:"creationTimestamp,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
}

// Resource is implemented by every kind.
type Resource interface {
	// GetTypeMeta and GetObjectMeta give access to the common parts.
	GetTypeMeta() *TypeMeta
	GetObjectMeta() *ObjectMeta
	// KindInfo describes the kind (name, plural, scope).
	KindInfo() KindInfo
}

// Scope says whether a kind lives in a namespace.
type Scope int

const (
	ClusterScoped Scope = iota
	Namespaced
)

// KindInfo is the static description of a kind.
type KindInfo struct {
	Kind    string // "NetworkPolicy"
	Plural  string // "networkpolicies": also the datastore key segment
	Short   []string
	Scope   Scope
	Calico  bool // accepted with apiVersion projectcalico.org/v3
	NewFunc func() Resource
}

func (t *TypeMeta) GetTypeMeta() *TypeMeta       { return t }
func (m *ObjectMeta) GetObjectMeta() *ObjectMeta { return m }
