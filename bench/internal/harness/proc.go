package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a long-running process the bench started (a daemon or a server)
// inside a network namespace, through `ip netns exec` (which execs, so the
// PID is the command's own). It runs in its own process group.
type Proc struct {
	Name string
	Log  string
	ref  ProcRef
	cmd  *exec.Cmd
	done chan struct{}
	j    *Janitor
	once sync.Once
}

// StartProc starts argv inside namespace ns (empty: the bench's own
// namespace), output to logFile, and registers its stop.
func (j *Janitor) StartProc(name, ns string, argv []string, logFile string) (*Proc, error) {
	args := argv
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var lf *os.File
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open log of %s: %w", name, err)
		}
		lf = f
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		if lf != nil {
			lf.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if lf != nil {
		lf.Close()
	}
	st, _ := procStart(cmd.Process.Pid)
	p := &Proc{Name: name, Log: logFile, ref: ProcRef{PID: cmd.Process.Pid, Start: st}, cmd: cmd, done: make(chan struct{}), j: j}
	j.addProc(p.ref)
	go func() { _ = cmd.Wait(); close(p.done) }()
	j.Defer("process "+name, func() error { p.Stop(); return nil })
	return p, nil
}

// PID is the process ID.
func (p *Proc) PID() int { return p.ref.PID }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process ends.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process group (ours: we made it with Setpgid).
func (p *Proc) Signal(sig syscall.Signal) {
	if !p.Exited() {
		_ = syscall.Kill(-p.ref.PID, sig)
	}
}

// Stop sends SIGTERM, waits up to 10 s, then SIGKILL.
func (p *Proc) Stop() { p.stop(syscall.SIGTERM) }

// Kill sends SIGKILL (as a crash would) and waits.
func (p *Proc) Kill() { p.stop(syscall.SIGKILL) }

func (p *Proc) stop(sig syscall.Signal) {
	p.once.Do(func() {
		p.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.Signal(syscall.SIGKILL)
			<-p.done
		}
		p.j.dropProc(p.ref)
	})
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Run runs a short command to completion and returns its stdout; the error
// carries its stderr.
func Run(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// InNS prefixes argv with `ip netns exec ns`.
func InNS(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

// IP runs `ip -n ns ARGS...` (setup only, never timed).
func IP(ns string, args ...string) error {
	a := append([]string{"ip"}, args...)
	if ns != "" {
		a = append([]string{"ip", "-n", ns}, args...)
	}
	_, err := Run(context.Background(), a...)
	return err
}

// Sysctl sets key=value inside namespace ns.
func Sysctl(ns, key, value string) error {
	_, err := Run(context.Background(), InNS(ns, "sysctl", "-qw", key+"="+value)...)
	return err
}
