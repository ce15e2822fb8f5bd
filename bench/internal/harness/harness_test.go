package harness

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/bench/internal/report"
)

func TestOrder(t *testing.T) {
	tests := []struct {
		name  string
		round int
		want  []string
	}{
		{"odd rounds keep the order", 1, []string{"a", "b", "c"}},
		{"even rounds reverse it", 2, []string{"c", "b", "a"}},
		{"round 3", 3, []string{"a", "b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Order(tc.round, "a", "b", "c")); diff != "" {
				t.Errorf("Order(%d) (-want +got):\n%s", tc.round, diff)
			}
		})
	}
}

func TestSelected(t *testing.T) {
	tests := []struct {
		name       string
		id         string
		only, skip []string
		want       bool
	}{
		{"everything by default", "cni", nil, nil, true},
		{"only lists it", "cni", []string{"dns", "cni"}, nil, true},
		{"only lists others", "cni", []string{"dns"}, nil, false},
		{"skip wins", "cni", []string{"cni"}, []string{"cni"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := selected(tc.id, tc.only, tc.skip); got != tc.want {
				t.Errorf("selected(%q, %v, %v) = %v, want %v", tc.id, tc.only, tc.skip, got, tc.want)
			}
		})
	}
}

func TestRuleGenerators(t *testing.T) {
	tests := []struct {
		name      string
		text      string
		wantLines int
		contains  []string
	}{
		{"iptables with ct", IptLinear(3, true), 3 + 4, []string{"-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-A FORWARD -s 172.16.0.2/32 -p tcp -m tcp --dport 8080 -j DROP", "COMMIT"}},
		{"iptables without ct", IptLinear(2, false), 2 + 3, []string{"*filter"}},
		{"nft with ct", NftLinear(2, true), 2 + 6, []string{"ct state established,related accept", "ip saddr 172.16.0.1 tcp dport 8080 drop"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Count(tc.text, "\n"); got != tc.wantLines {
				t.Errorf("got %d lines, want %d:\n%s", got, tc.wantLines, tc.text)
			}
			for _, c := range tc.contains {
				if !strings.Contains(tc.text, c) {
					t.Errorf("missing %q in:\n%s", c, tc.text)
				}
			}
		})
	}
	// Addresses never repeat and never reach the benchmark's 10.x traffic.
	if got := nonMatching(65536 + 257); got != "172.17.1.1" {
		t.Errorf("nonMatching(65793) = %s, want 172.17.1.1", got)
	}
}

func TestEnvName(t *testing.T) {
	e := &Env{RunID: "ab12", seq: new(atomic.Int64)}
	seen := map[string]bool{}
	for range 200 {
		n := e.Name("rc")
		if seen[n] {
			t.Fatalf("Name repeated %q", n)
		}
		seen[n] = true
		if len(n) > 15 {
			t.Errorf("Name %q is longer than 15 characters", n)
		}
	}
}

func TestRecorder(t *testing.T) {
	b := &report.Bench{ID: "x"}
	r := &Recorder{b: b}
	r.Add("m", "tabby", 1, 2)
	r.Dist("p", "title", "ms", "tabby", []float64{1})
	r.Dist("p", "title", "ms", "tabby", []float64{2})
	r.Dist("p", "title", "ms", "base", []float64{3})
	r.Point(report.Series{Plot: "s", System: "a"}, 1, 10)
	r.Point(report.Series{Plot: "s", System: "a"}, 2, 20)
	if len(b.Samples) != 1 || b.Samples[0].Value != 2 || b.Samples[0].Round != 1 {
		t.Errorf("samples = %+v", b.Samples)
	}
	if diff := cmp.Diff([]float64{1, 2}, b.Dists[0].Values); diff != "" || len(b.Dists) != 2 {
		t.Errorf("dists = %+v (-want +got first values:\n%s)", b.Dists, diff)
	}
	if diff := cmp.Diff([]float64{1, 2}, b.Series[0].X); diff != "" || len(b.Series) != 1 {
		t.Errorf("series = %+v", b.Series)
	}
}

func TestJanitorUndoesInReverse(t *testing.T) {
	j, err := NewJanitor(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	j.Defer("a", func() error { got = append(got, "a"); return nil })
	s := j.Scope()
	s.Defer("b", func() error { got = append(got, "b"); return nil })
	s.Defer("c", func() error { got = append(got, "c"); return nil })
	s.Close()
	j.Defer("d", func() error { got = append(got, "d"); return nil })
	j.Finish()
	j.Finish() // idempotent
	if diff := cmp.Diff([]string{"c", "b", "d", "a"}, got); diff != "" {
		t.Errorf("undo order (-want +got):\n%s", diff)
	}
}

func TestJanitorRecordsAndRemovesTempDirs(t *testing.T) {
	state := t.TempDir()
	j, err := NewJanitor(state, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	d, err := j.TempDir("tabby-bench-test-")
	if err != nil {
		t.Fatal(err)
	}
	st := readState(t, state)
	if diff := cmp.Diff([]string{d}, st.Dirs); diff != "" {
		t.Errorf("recorded dirs (-want +got):\n%s", diff)
	}
	j.Finish()
	if _, err := os.Stat(d); !os.IsNotExist(err) {
		t.Errorf("temp dir %s still there after Finish (%v)", d, err)
	}
	if files, _ := filepath.Glob(filepath.Join(state, "run-*.json")); len(files) != 0 {
		t.Errorf("state files left: %v", files)
	}
}

func TestCleanStaleRemovesDeadRuns(t *testing.T) {
	state := t.TempDir()
	leftover, err := os.MkdirTemp("", "tabby-bench-stale-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(leftover) })
	dead := runState{PID: 1 << 30, Start: 1, Dirs: []string{leftover}, Labs: []string{"tbdead1"}}
	b, _ := json.Marshal(dead)
	if err := os.WriteFile(filepath.Join(state, "run-1.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	// A live run (this test process) is left alone.
	me, err := NewJanitor(state, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer me.Finish()
	var downed []string
	did, err := CleanStale(state, func(name string) error { downed = append(downed, name); return nil })
	if err != nil {
		t.Fatalf("CleanStale: %v", err)
	}
	if diff := cmp.Diff([]string{"tbdead1"}, downed); diff != "" {
		t.Errorf("labs taken down (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover dir still there (%v); did %v", err, did)
	}
	if _, err := os.Stat(filepath.Join(state, "run-1.json")); !os.IsNotExist(err) {
		t.Errorf("stale state file still there")
	}
	if files, _ := filepath.Glob(filepath.Join(state, "run-*.json")); len(files) != 1 {
		t.Errorf("state files = %v, want only this run's", files)
	}
}

func readState(t *testing.T, dir string) runState {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "run-*.json"))
	if len(files) != 1 {
		t.Fatalf("state files = %v, want 1", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var s runState
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestProcStart(t *testing.T) {
	st, err := procStart(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("procStart(self) = %d, %v", st, err)
	}
	if !alive(ProcRef{PID: os.Getpid(), Start: st}) {
		t.Errorf("this process is not alive by its own start time")
	}
	if alive(ProcRef{PID: os.Getpid(), Start: st + 1}) {
		t.Errorf("a recycled PID (other start time) counts as alive")
	}
}

func TestKeepLogs(t *testing.T) {
	tmp, dst := t.TempDir(), filepath.Join(t.TempDir(), "logs")
	if err := os.MkdirAll(filepath.Join(tmp, "h1"), 0o755); err != nil {
		t.Fatal(err)
	}
	for f, body := range map[string]string{"h1/agent.log": "agent says", "datastore.log": "etcd says", "queries": "not a log"} {
		if err := os.WriteFile(filepath.Join(tmp, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := keepLogs(tmp, dst); got != dst {
		t.Fatalf("keepLogs = %q, want %q", got, dst)
	}
	entries, _ := os.ReadDir(dst)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"datastore.log", "h1-agent.log"}, names); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	if got := keepLogs(t.TempDir(), filepath.Join(t.TempDir(), "none")); got != "" {
		t.Errorf("keepLogs of no logs = %q, want empty", got)
	}
}

func TestWaitExit(t *testing.T) {
	if WaitExit(os.Getpid(), 0) {
		t.Errorf("WaitExit(self) = true, want false: this process runs")
	}
	if !WaitExit(1<<30, 0) {
		t.Errorf("WaitExit(no such pid) = false, want true")
	}
}
