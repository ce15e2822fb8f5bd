package ctl

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/agent/routing/router"
)

// TestWriteNodeStatusBFD: a BFD column appears when a session runs BFD.
func TestWriteNodeStatusBFD(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	st := &router.Status{
		Node: "h1",
		BGP:  &router.BGPStatus{RouterID: "10.101.1.11", ASN: 64512, ListenPort: 179},
		Peers: []router.PeerStatus{
			{Address: "10.101.1.12", Type: "node-to-node mesh", State: "up", Since: now.Add(-time.Hour), Info: "Established", BFD: "Up"},
			{Address: "10.101.1.13", Type: "node-to-node mesh", State: "start", Since: now.Add(-time.Hour), Info: "Active BFD is down", BFD: "Down"},
			{Address: "10.101.1.20", Type: "global", State: "up", Since: now.Add(-time.Hour), Info: "Established"},
		},
	}
	var b bytes.Buffer
	writeNodeStatus(&b, st, now)
	want := `Tabby process is running.

IPv4 BGP status
+--------------+-------------------+-------+----------+--------------------+------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |        INFO        | BFD  |
+--------------+-------------------+-------+----------+--------------------+------+
| 10.101.1.12  | node-to-node mesh | up    | 11:00:00 | Established        | Up   |
| 10.101.1.13  | node-to-node mesh | start | 11:00:00 | Active BFD is down | Down |
| 10.101.1.20  | global            | up    | 11:00:00 | Established        | -    |
+--------------+-------------------+-------+----------+--------------------+------+

IPv6 BGP status
No IPv6 peers found.
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestWriteNodeStatus(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	st := &router.Status{
		Node: "h1",
		BGP:  &router.BGPStatus{RouterID: "10.101.1.11", ASN: 64512, ListenPort: 179},
		Peers: []router.PeerStatus{
			{Address: "10.101.1.12", Type: "node-to-node mesh", State: "up", Since: now.Add(-time.Hour), Info: "Established"},
			{Address: "10.101.1.20", Type: "route reflector", State: "start", Since: now.Add(-48 * time.Hour), Info: "Active dial tcp 10.101.1.20:179: connect: connection refused"},
		},
		Problems: []string{"node h1 has no VXLAN tunnel address yet"},
	}
	var b bytes.Buffer
	writeNodeStatus(&b, st, now)
	want := `Tabby process is running.

IPv4 BGP status
+--------------+-------------------+-------+------------+--------------------------------------------------------------+
| PEER ADDRESS |     PEER TYPE     | STATE |   SINCE    |                             INFO                             |
+--------------+-------------------+-------+------------+--------------------------------------------------------------+
| 10.101.1.12  | node-to-node mesh | up    | 11:00:00   | Established                                                  |
| 10.101.1.20  | route reflector   | start | 2026-02-27 | Active dial tcp 10.101.1.20:179: connect: connection refused |
+--------------+-------------------+-------+------------+--------------------------------------------------------------+

IPv6 BGP status
No IPv6 peers found.

Problems:
  node h1 has no VXLAN tunnel address yet
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestNodeStatusCommand(t *testing.T) {
	st := router.Status{Node: "h1", BGP: &router.BGPStatus{RouterID: "10.0.0.1", ASN: 64512},
		Peers: []router.PeerStatus{{Address: "fd00::2", Type: "global", State: "up", Info: "Established"}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != router.StatusPath {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"table", []string{"node", "status", "--agent-http", addr}, 0, []string{"Tabby process is running.", "No IPv4 peers found.", "IPv6 BGP status", "| fd00::2      | global    | up    |"}},
		{"json", []string{"node", "status", "--agent-http", addr, "-o", "json"}, 0, []string{`"address":"fd00::2"`, `"asNumber":64512`}},
		{"agent down", []string{"node", "status", "--agent-http", "127.0.0.1:1", "--timeout", "2s"}, 1, []string{"Tabby process is not running."}},
		{"bad output", []string{"node", "status", "--agent-http", addr, "-o", "yaml"}, 1, []string{`--output: "yaml" is not table or json`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(tc.args, strings.NewReader(""), &out, &errOut)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, errOut.String())
			}
			all := out.String() + errOut.String()
			for _, c := range tc.contains {
				if !strings.Contains(all, c) {
					t.Errorf("output %q lacks %q", all, c)
				}
			}
		})
	}
}
