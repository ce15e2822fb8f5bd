package ctl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/version"
)

// DefaultClusterType is the clusterType a new ClusterInformation gets.
const DefaultClusterType = "tabby,etcdv3,bgp"

// clusterVersion is what `tabby version` reports.
type clusterVersion struct {
	Client      string         `json:"clientVersion"`
	ClusterGUID string         `json:"clusterGUID,omitempty"`
	ClusterType string         `json:"clusterType,omitempty"`
	Datastore   []etcdMember   `json:"datastore,omitempty"`
	Agents      []agentVersion `json:"agents"`
}

type etcdMember struct {
	Endpoint string `json:"endpoint"`
	Version  string `json:"version,omitempty"`
	Error    string `json:"error,omitempty"`
}

type agentVersion struct {
	Node          string `json:"node"`
	Version       string `json:"version"`
	LastHeartbeat string `json:"lastHeartbeat,omitempty"`
}

func newVersionCommand(g *globals) *cobra.Command {
	var clientOnly bool
	var output string
	cmd := &cobra.Command{
		Use:   "version [--client] [-o json]",
		Short: "Print the client version and the cluster's: datastore, agents per node, cluster type and GUID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return exitError{code: 2, msg: fmt.Sprintf("-o: %q is not json", output)}
			}
			v := clusterVersion{Client: version.String(), Agents: []agentVersion{}}
			if clientOnly {
				return writeVersion(g.stdout, v, output)
			}
			store, err := g.connect()
			if err != nil {
				fmt.Fprintf(g.stdout, "Client Version:    %s\n", version.String())
				return fmt.Errorf("cluster version: %w", err)
			}
			defer store.Close()
			if err := readClusterVersion(cmd.Context(), store, &v); err != nil {
				return err
			}
			return writeVersion(g.stdout, v, output)
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print the client version only (no datastore needed)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "json: print as JSON")
	return cmd
}

func readClusterVersion(ctx context.Context, store datastore.Store, v *clusterVersion) error {
	c := datastore.NewClient(store)
	ci, err := ensureClusterInformation(ctx, c)
	if err != nil {
		return err
	}
	v.ClusterGUID, v.ClusterType = ci.Spec.ClusterGUID, ci.Spec.ClusterType
	if es, ok := store.(*etcd.Store); ok {
		cli := es.Client()
		for _, ep := range cli.Endpoints() {
			m := etcdMember{Endpoint: ep}
			if st, err := cli.Status(ctx, ep); err != nil {
				m.Error = err.Error()
			} else {
				m.Version = st.Version
			}
			v.Datastore = append(v.Datastore, m)
		}
	}
	nodes, _, err := c.List(ctx, "Node", "")
	if err != nil {
		return err
	}
	for _, r := range nodes {
		n := r.(*api.Node)
		av := agentVersion{Node: n.Name, Version: n.Status.AgentVersion, LastHeartbeat: n.Status.LastHeartbeat}
		if av.Version == "" {
			av.Version = "(no agent has reported)"
		}
		v.Agents = append(v.Agents, av)
	}
	sort.Slice(v.Agents, func(i, j int) bool { return v.Agents[i].Node < v.Agents[j].Node })
	return nil
}

// ensureClusterInformation reads ClusterInformation default, creating it
// (with a new random GUID) when absent. Create is "key absent", so when
// several tools race exactly one GUID is stored and every one reads it.
func ensureClusterInformation(ctx context.Context, c *datastore.Client) (*api.ClusterInformation, error) {
	for range 3 {
		r, err := c.Get(ctx, "ClusterInformation", "", "default")
		if err == nil {
			return r.(*api.ClusterInformation), nil
		}
		if !errors.Is(err, datastore.ErrNotFound) {
			return nil, err
		}
		var b [16]byte
		_, _ = rand.Read(b[:])
		ready := true
		ci := &api.ClusterInformation{ObjectMeta: api.ObjectMeta{Name: "default"},
			Spec: api.ClusterInformationSpec{ClusterGUID: hex.EncodeToString(b[:]), ClusterType: DefaultClusterType, DatastoreReady: &ready, TabbyVersion: version.String()}}
		if _, err := c.Create(ctx, ci); errors.Is(err, datastore.ErrExists) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("create ClusterInformation: %w", err)
		}
		return ci, nil
	}
	return nil, fmt.Errorf("ClusterInformation \"default\": %w", datastore.ErrConflict)
}

func writeVersion(w io.Writer, v clusterVersion, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	fmt.Fprintf(w, "Client Version:    %s\n", v.Client)
	if v.ClusterGUID == "" {
		return nil
	}
	fmt.Fprintf(w, "Cluster GUID:      %s\n", v.ClusterGUID)
	fmt.Fprintf(w, "Cluster Type:      %s\n", v.ClusterType)
	var ds []string
	for _, m := range v.Datastore {
		if m.Error != "" {
			ds = append(ds, fmt.Sprintf("%s (unreachable: %s)", m.Endpoint, m.Error))
		} else {
			ds = append(ds, fmt.Sprintf("etcd %s (%s)", m.Version, m.Endpoint))
		}
	}
	fmt.Fprintf(w, "Datastore:         %s\n", strings.Join(ds, ", "))
	if len(v.Agents) == 0 {
		fmt.Fprintln(w, "Agents:            (no nodes)")
		return nil
	}
	fmt.Fprintln(w, "Agents:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tVERSION\tLAST HEARTBEAT")
	for _, a := range v.Agents {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", a.Node, a.Version, dash(a.LastHeartbeat))
	}
	return tw.Flush()
}
