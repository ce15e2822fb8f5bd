package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc identifies a process the lab started: its PID and its start time
// (clock ticks after boot), so a recycled PID is never mistaken for it.
type proc struct {
	PID   int
	Start uint64
}

func (p proc) String() string { return fmt.Sprintf("%d %d", p.PID, p.Start) }

// parseProc parses a pid file: "PID START\n".
func parseProc(s string) (proc, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return proc{}, fmt.Errorf("pid file %q: want \"PID START\"", s)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return proc{}, fmt.Errorf("pid file %q: bad PID %q", s, f[0])
	}
	start, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return proc{}, fmt.Errorf("pid file %q: bad start time %q", s, f[1])
	}
	return proc{PID: pid, Start: start}, nil
}

func readPidFile(path string) (proc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return proc{}, err
	}
	return parseProc(string(data))
}

func writePidFile(path string, p proc) error {
	return os.WriteFile(path, []byte(p.String()+"\n"), 0o644)
}

// parseStat returns the state letter and start time from the contents of
// /proc/PID/stat.
func parseStat(stat string) (state byte, start uint64, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errors.New("no ')' in stat")
	}
	f := strings.Fields(stat[i+1:])
	// Fields after the command: state is field 3, starttime field 22.
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, errors.New("short stat")
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("start time %q: %w", f[19], err)
	}
	return f[0][0], start, nil
}

// procStatus reads a process's state letter and start time.
func procStatus(pid int) (state byte, start uint64, err error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	return parseStat(string(data))
}

// alive reports whether p still runs (a zombie does not).
func (p proc) alive() bool {
	if p.PID <= 0 {
		return false
	}
	state, start, err := procStatus(p.PID)
	return err == nil && start == p.Start && state != 'Z' && state != 'X'
}

// reap collects p if it is our exited child (a no-op otherwise).
func (p proc) reap() {
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(p.PID, &ws, syscall.WNOHANG, nil)
}

// stop ends p: SIGTERM, then SIGKILL after grace. It succeeds at once
// when p is not running (any more).
func (p proc) stop(grace time.Duration) error {
	if !p.alive() {
		p.reap()
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	if p.waitGone(grace) {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	if p.waitGone(10 * time.Second) {
		return nil
	}
	return fmt.Errorf("process %d did not exit after SIGKILL", p.PID)
}

func (p proc) waitGone(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		p.reap()
		if !p.alive() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procSpec is a process to start inside a namespace.
type procSpec struct {
	Namespace string
	Argv      []string
	Log       string
	PidFile   string
	// Env is the environment (nil: this process's).
	Env []string
}

// starter runs processes in named namespaces through `ip netns exec`,
// which also gives them /etc/netns/NS/ files and a sysfs of the namespace.
type starter struct{ ip string }

// start launches s detached (own session, stdin /dev/null, output
// appended to s.Log) and records its PID in s.PidFile.
func (st starter) start(s procSpec) (proc, error) {
	if len(s.Argv) == 0 {
		return proc{}, errors.New("start process: no command")
	}
	logf, err := os.OpenFile(s.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return proc{}, fmt.Errorf("start %s: open log: %w", s.Argv[0], err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return proc{}, fmt.Errorf("start %s: %w", s.Argv[0], err)
	}
	defer devnull.Close()
	cmd := exec.Command(st.ip, append([]string{"netns", "exec", s.Namespace}, s.Argv...)...)
	cmd.Env = s.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return proc{}, fmt.Errorf("start %s in %s: %w", s.Argv[0], s.Namespace, err)
	}
	p := proc{PID: cmd.Process.Pid}
	_, p.Start, err = procStatus(p.PID)
	_ = cmd.Process.Release()
	if err != nil {
		p.reap()
		return proc{}, fmt.Errorf("start %s in %s: process %d exited at once", s.Argv[0], s.Namespace, p.PID)
	}
	if s.PidFile != "" {
		if err := writePidFile(s.PidFile, p); err != nil {
			_ = p.stop(time.Second)
			return proc{}, fmt.Errorf("start %s: record pid: %w", s.Argv[0], err)
		}
	}
	return p, nil
}

// command builds (without starting) a command run inside a namespace.
func (st starter) command(ctx context.Context, ns string, argv []string) *exec.Cmd {
	return exec.CommandContext(ctx, st.ip, append([]string{"netns", "exec", ns}, argv...)...)
}

// stopPidFile stops the process recorded in path and removes the file.
func stopPidFile(path string, grace time.Duration) error {
	p, err := readPidFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.stop(grace); err != nil {
		return err
	}
	return os.Remove(path)
}

// nsInode is the identity of the network namespace at path.
func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// procsInNamespaces lists the processes (other than this one) whose main
// thread is in one of the network namespaces with the given inodes.
func procsInNamespaces(inodes map[uint64]bool) []proc {
	if len(inodes) == 0 {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil {
			continue
		}
		ino, ok := parseNSLink(link)
		if !ok || !inodes[ino] {
			continue
		}
		state, start, err := procStatus(pid)
		if err != nil || state == 'Z' || state == 'X' {
			continue
		}
		out = append(out, proc{PID: pid, Start: start})
	}
	return out
}

// parseNSLink parses "net:[4026531840]".
func parseNSLink(s string) (uint64, bool) {
	rest, ok := strings.CutPrefix(s, "net:[")
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	return n, err == nil
}

// stopAll stops processes concurrently and joins the errors.
func stopAll(ps []proc, grace time.Duration) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, 32)
	for _, p := range ps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := p.stop(grace); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// tail returns the last n lines of a log file, for error messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
