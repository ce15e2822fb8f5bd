// Package harness runs Tabby's benchmarks: the Benchmark type and the round
// runner that interleaves Tabby with its baselines, the Janitor that removes
// everything a run made (on success, error, Ctrl-C or SIGTERM, and — from a
// state file — after a run that was killed), processes started inside
// private network namespaces, and the rigs the benchmarks share: a datastore,
// Tabby hosts (a namespace with a `tabby agent`), a Calico-style routed veth
// path without Tabby, and rule generators for the baselines.
//
// Everything it makes is inside network namespaces named tbb<run id>…; it
// never touches the root namespace's links, routes or rulesets and sends
// traffic only inside its own namespaces. Processes are stopped by their
// recorded PID and start time only.
//
// It imports Tabby's public packages (datastore, api, netns, lab) as a
// client would; it must not import the agent, the DNS server or ctl.
package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
)

// StateDir records the runs in progress, so that a run killed with SIGKILL
// is cleaned up by the next one.
const StateDir = "/run/tabby-bench"

// runState is what a run has made that outlives it if it is killed.
type runState struct {
	PID        int       `json:"pid"`
	Start      uint64    `json:"start"`
	Namespaces []string  `json:"namespaces"`
	Procs      []ProcRef `json:"procs"`
	Labs       []string  `json:"labs"`
	Dirs       []string  `json:"dirs"`
}

// ProcRef names a process by PID and start time (clock ticks since boot),
// so a recycled PID is never signalled.
type ProcRef struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// Janitor records what a run makes and removes it, last made first.
// Scopes nest: a benchmark's scope is closed when the benchmark ends.
type Janitor struct {
	root   *janitorRoot
	mu     sync.Mutex
	undo   []undo
	closed bool
}

type undo struct {
	what string
	fn   func() error
}

type janitorRoot struct {
	mu    sync.Mutex
	file  string
	state runState
	log   *slog.Logger
}

// NewJanitor starts recording a run in StateDir (dir overrides it for tests).
func NewJanitor(dir string, log *slog.Logger) (*Janitor, error) {
	if dir == "" {
		dir = StateDir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	pid := os.Getpid()
	start, _ := procStart(pid)
	r := &janitorRoot{file: filepath.Join(dir, fmt.Sprintf("run-%d.json", pid)), state: runState{PID: pid, Start: start}, log: log}
	if err := r.save(); err != nil {
		return nil, err
	}
	return &Janitor{root: r}, nil
}

func (r *janitorRoot) save() error {
	b, err := json.Marshal(r.state)
	if err != nil {
		return err
	}
	tmp := r.file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write run state: %w", err)
	}
	return os.Rename(tmp, r.file)
}

func (r *janitorRoot) edit(f func(*runState)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.state)
	if err := r.save(); err != nil {
		r.log.Warn("cannot record run state", "err", err)
	}
}

// Scope returns a child Janitor whose Close undoes only what was added to it.
func (j *Janitor) Scope() *Janitor {
	c := &Janitor{root: j.root}
	j.Defer("scope", func() error { c.Close(); return nil })
	return c
}

// Defer registers fn to run at Close.
func (j *Janitor) Defer(what string, fn func() error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.undo = append(j.undo, undo{what, fn})
}

// Close runs every registered undo, last first, and logs failures.
func (j *Janitor) Close() {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return
	}
	j.closed = true
	u := j.undo
	j.undo = nil
	j.mu.Unlock()
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i].fn(); err != nil {
			j.root.log.Warn("cleanup failed", "what", u[i].what, "err", err)
		}
	}
}

// Finish closes j and removes the run's state file (the root Janitor only).
func (j *Janitor) Finish() {
	j.Close()
	_ = os.Remove(j.root.file)
}

// Namespace creates a network namespace, brings its loopback up and
// registers its deletion.
func (j *Janitor) Namespace(name string) (string, error) {
	j.root.edit(func(s *runState) { s.Namespaces = append(s.Namespaces, name) })
	path, err := netns.Create(name)
	if err != nil {
		return "", err
	}
	j.Defer("namespace "+name, func() error {
		err := netns.Delete(name)
		j.root.edit(func(s *runState) {
			s.Namespaces = slices.DeleteFunc(s.Namespaces, func(n string) bool { return n == name })
		})
		return err
	})
	if err := IP(name, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	return path, nil
}

// TempDir creates a temporary directory and registers its removal.
func (j *Janitor) TempDir(pattern string) (string, error) {
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", fmt.Errorf("create temp dir: %w", err)
	}
	j.root.edit(func(s *runState) { s.Dirs = append(s.Dirs, d) })
	j.Defer("dir "+d, func() error {
		err := os.RemoveAll(d)
		j.root.edit(func(s *runState) { s.Dirs = slices.DeleteFunc(s.Dirs, func(n string) bool { return n == d }) })
		return err
	})
	return d, nil
}

// Lab records a lab name (removed by the caller's own Defer; recorded so a
// killed run's lab is taken down by the next run).
func (j *Janitor) Lab(name string) {
	j.root.edit(func(s *runState) { s.Labs = append(s.Labs, name) })
}

// LabDone forgets a lab name.
func (j *Janitor) LabDone(name string) {
	j.root.edit(func(s *runState) { s.Labs = slices.DeleteFunc(s.Labs, func(n string) bool { return n == name }) })
}

func (j *Janitor) addProc(p ProcRef) {
	j.root.edit(func(s *runState) { s.Procs = append(s.Procs, p) })
}

func (j *Janitor) dropProc(p ProcRef) {
	j.root.edit(func(s *runState) { s.Procs = slices.DeleteFunc(s.Procs, func(q ProcRef) bool { return q == p }) })
}

// CleanStale removes what earlier runs that no longer live left behind:
// their processes (by PID and start time), namespaces, directories, and
// labs (through downLab). It returns what it removed, for the log.
func CleanStale(dir string, downLab func(name string) error) ([]string, error) {
	if dir == "" {
		dir = StateDir
	}
	files, err := filepath.Glob(filepath.Join(dir, "run-*.json"))
	if err != nil {
		return nil, err
	}
	var did []string
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var s runState
		if err := json.Unmarshal(b, &s); err != nil {
			_ = os.Remove(f)
			continue
		}
		if alive(ProcRef{PID: s.PID, Start: s.Start}) {
			continue
		}
		for _, p := range s.Procs {
			if alive(p) {
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
				did = append(did, fmt.Sprintf("process %d", p.PID))
			}
		}
		for _, l := range s.Labs {
			if downLab != nil {
				if err := downLab(l); err != nil {
					errs = append(errs, fmt.Errorf("lab %s: %w", l, err))
				}
				did = append(did, "lab "+l)
			}
		}
		for _, n := range s.Namespaces {
			if err := netns.Delete(n); err != nil {
				errs = append(errs, err)
			}
			did = append(did, "namespace "+n)
		}
		for _, d := range s.Dirs {
			if strings.HasPrefix(d, os.TempDir()) {
				_ = os.RemoveAll(d)
				did = append(did, "dir "+d)
			}
		}
		_ = os.Remove(f)
	}
	return did, errors.Join(errs...)
}

// procStart reads the start time (field 22 of /proc/PID/stat).
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func alive(p ProcRef) bool {
	st, err := procStart(p.PID)
	return err == nil && st == p.Start
}

// WaitExit waits until process pid has exited — gone, or a zombie with no
// thread left (the leader of a multi-threaded process shows as a zombie
// while its other threads, which share its open sockets, still exit) — at
// most d; it reports whether it did.
func WaitExit(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] == 'Z' {
			if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err != nil || len(tasks) <= 1 {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
