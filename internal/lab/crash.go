package lab

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
)

// PhaseCrashed is a container killed by Crash: no process, no namespace,
// and no CNI DEL sent.
const PhaseCrashed = "crashed"

// Crash kills a container the way a crashed runtime, `ctr run -d --cni` or a
// reboot leaves it: every process in it is killed with SIGKILL and its
// network namespace is deleted (with its Mesos handle, which would hold it),
// and no CNI DEL is sent, so only the host's agent can notice. Its record
// stays, in phase crashed: Remove then sends the DEL a late runtime would,
// and deletes what is left.
func (l *Lab) Crash(ctx context.Context, name string) error {
	c, err := l.Container(name)
	if err != nil {
		return err
	}
	var ps []proc
	if p, err := readPidFile(l.containerPidFile(c.Name)); err == nil {
		ps = append(ps, p)
	}
	if ino, err := nsInode(netns.Path(c.NetNS)); err == nil {
		ps = append(ps, procsInNamespaces(map[uint64]bool{ino: true})...)
	}
	var errs []error
	for _, p := range ps {
		if err := p.kill(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Mesos != nil {
		if err := unmount(l.mesosHandle(&c)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := netns.Delete(c.NetNS); err != nil {
		errs = append(errs, err)
	}
	c.Phase = PhaseCrashed
	if err := l.updateContainer(c); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("crash %s: %w", name, err)
	}
	return nil
}

// kill ends p with SIGKILL at once (no chance to clean up, as in a crash).
func (p proc) kill() error {
	if !p.alive() {
		p.reap()
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	if p.waitGone(10 * time.Second) {
		return nil
	}
	return fmt.Errorf("process %d did not exit after SIGKILL", p.PID)
}
