package agent

import (
	"encoding/json"
	"net/http"
	"sort"

	"github.com/tabbynet/tabby/internal/api"
)

// CachePath is the agent's HTTP path serving its cache of datastore
// resources as JSON (secrets redacted), for `tabby node diags`.
const CachePath = "/debug/cache"

// cacheDump is what CachePath serves.
type cacheDump struct {
	Node      string                    `json:"node"`
	Version   string                    `json:"agentVersion"`
	Synced    bool                      `json:"synced"`
	Resources map[string][]api.Resource `json:"resources"` // kind → resources, by namespace/name
}

func (a *Agent) serveCache(w http.ResponseWriter, _ *http.Request) {
	d := cacheDump{Node: a.cfg.Node, Version: Version, Synced: a.synced.Load(), Resources: map[string][]api.Resource{}}
	for _, k := range a.cache.kinds {
		rs := a.cache.list(k)
		sort.Slice(rs, func(i, j int) bool { return objKey(rs[i]) < objKey(rs[j]) })
		for i := range rs {
			rs[i] = api.Redact(rs[i])
		}
		d.Resources[k] = rs
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(d)
}
