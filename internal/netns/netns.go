// Package netns is the only place in Tabby that enters a network namespace.
//
// Do runs a function inside a namespace on a dedicated, locked OS thread and
// always switches that thread back; if switching back fails, the thread is
// left locked so the Go runtime destroys it instead of reusing it in the wrong
// namespace. Create and Delete manage persistent named namespaces bind-mounted
// under /var/run/netns, exactly like `ip netns add` and `ip netns del`.
//
// Background: containernetworking/plugins pkg/ns/README.md explains why a
// long-lived goroutine must never switch namespace, and why the switch must
// happen on a locked thread.
//
// It imports the standard library and golang.org/x/sys/unix only; it must not
// import netlink or any other Tabby package.
package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// RunDir is where named network namespaces are bind-mounted, the directory
// iproute2 uses (`ip netns`), so both tools see the same namespaces.
const RunDir = "/var/run/netns"

// setns switches the calling thread's network namespace. Tests replace it to
// simulate a failure to switch back.
var setns = func(fd int) error { return unix.Setns(fd, unix.CLONE_NEWNET) }

// Path returns the path of the named namespace under RunDir. It does not
// check the name; Create and Delete do.
func Path(name string) string { return filepath.Join(RunDir, name) }

// Exists reports whether path refers to a network namespace (a bind mount
// under RunDir or a /proc/PID/ns/net file).
func Exists(path string) bool {
	f, err := openNS(path)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// Gone reports whether path certainly no longer refers to a namespace: it
// does not exist (a bind mount that was removed, /proc/PID/ns/net of a
// process that has exited), or it is an ordinary file that no namespace is
// mounted on any more (a bind mount unmounted but not removed). A path
// that is a namespace file is not gone, whatever its type. An error means
// the answer is unknown (permission denied, too many open files, …), and
// a caller must not treat the namespace as gone. Gone opens nothing, so it
// never holds a dying namespace alive.
func Gone(path string) (bool, error) {
	if path == "" {
		return false, errors.New("netns path is empty")
	}
	var st unix.Statfs_t
	err := unix.Statfs(path, &st)
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type != unix.NSFS_MAGIC, nil
}

// Open opens the network namespace at path, for APIs that take a namespace
// file descriptor (such as a veth peer's IFLA_NET_NS_FD). It does not enter
// the namespace. The caller closes the file.
func Open(path string) (*os.File, error) {
	f, err := openNS(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	return f, nil
}

// openNS opens path and checks that it is a network namespace.
func openNS(path string) (*os.File, error) {
	if path == "" {
		return nil, errors.New("netns path is empty")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("statfs %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fmt.Errorf("%s is not a namespace (filesystem magic %#x)", path, st.Type)
	}
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("namespace type of %s: %w", path, err)
	}
	if typ != unix.CLONE_NEWNET {
		f.Close()
		return nil, fmt.Errorf("%s is not a network namespace (type %#x)", path, typ)
	}
	return f, nil
}

// threadNSPath is the network namespace of the calling OS thread (not of
// the process: /proc/self/ns/net is the main thread's).
func threadNSPath() string {
	return fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
}

// Do runs fn inside the network namespace at path and returns its error.
//
// fn runs on a new goroutine locked to its OS thread; the caller's goroutine
// and thread never change namespace. Sockets and netlink handles that fn
// opens stay bound to the namespace after fn returns. fn must not call
// runtime.UnlockOSThread, and goroutines it starts do not run in the
// namespace. A panic in fn is re-raised in the caller, as a *PanicError
// carrying fn's stack, after the thread has been switched back.
//
// If switching back fails, the thread stays locked and is destroyed by the
// runtime when the goroutine ends, and Do returns an error.
func Do(path string, fn func() error) error {
	target, err := openNS(path)
	if err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	defer target.Close()

	type outcome struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan outcome, 1)
	go func() {
		runtime.LockOSThread()
		var out outcome
		safe := false // thread is in its original namespace
		defer func() {
			if safe {
				runtime.UnlockOSThread()
			}
			// else: exit locked, so the runtime terminates this thread.
			done <- out
		}()

		orig, err := os.Open(threadNSPath())
		if err != nil {
			safe = true
			out.err = fmt.Errorf("enter netns %s: open current netns: %w", path, err)
			return
		}
		defer orig.Close()
		if err := setns(int(target.Fd())); err != nil {
			safe = true // setns failed atomically: still in the original namespace
			out.err = fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					out.panicked, out.panicVal = true, &PanicError{Value: r, Stack: debug.Stack()}
				}
			}()
			out.err = fn()
		}()
		if err := setns(int(orig.Fd())); err != nil {
			out.err = errors.Join(out.err, fmt.Errorf("leave netns %s (thread discarded): %w", path, err))
			return
		}
		safe = true
	}()
	out := <-done
	if out.panicked {
		panic(out.panicVal)
	}
	return out.err
}

// PanicError is the value Do re-panics with when fn panics: the original
// value and the stack of the goroutine that ran fn.
type PanicError struct {
	Value any
	Stack []byte
}

func (p *PanicError) Error() string {
	return fmt.Sprintf("panic in netns.Do: %v\n\n%s", p.Value, p.Stack)
}

// Unwrap returns the original value if it is an error.
func (p *PanicError) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// validName checks a namespace name the way iproute2 does: a single,
// non-empty path element.
func validName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("netns name %q: must be a non-empty file name", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("netns name %q: must not contain '/' or NUL", name)
	case len(name) > 255:
		return fmt.Errorf("netns name %q: longer than 255 bytes", name)
	}
	return nil
}

// runDirMu serialises the one-time setup of RunDir as a shared mount point.
var runDirMu sync.Mutex

// prepareRunDir makes RunDir exist and be a shared mount point, so that
// namespace bind mounts propagate to mount namespaces cloned later (what
// `ip netns add` does).
func prepareRunDir() error {
	runDirMu.Lock()
	defer runDirMu.Unlock()
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", RunDir, err)
	}
	// Not a mount point yet: bind it onto itself, then make it shared.
	if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s onto itself: %w", RunDir, err)
	}
	if err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", RunDir, err)
	}
	return nil
}

// Create makes a new, empty network namespace that persists without any
// process in it, bind-mounted at Path(name), and returns that path. It
// fails if the name is taken. The calling thread's namespace is unchanged:
// the namespace is created on a separate locked thread.
func Create(name string) (string, error) {
	if err := validName(name); err != nil {
		return "", err
	}
	path := Path(name)
	if err := prepareRunDir(); err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	mp, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("create netns %s: %s already exists", name, path)
		}
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	mp.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		safe := false
		defer func() {
			if safe {
				runtime.UnlockOSThread()
			}
		}()
		orig, err := os.Open(threadNSPath())
		if err != nil {
			safe = true
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			safe = true
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		err = unix.Mount(threadNSPath(), path, "none", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind mount at %s: %w", path, err)
		}
		if serr := setns(int(orig.Fd())); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("switch back (thread discarded): %w", serr))
			return
		}
		safe = true
		errc <- err
	}()
	if err := <-errc; err != nil {
		unix.Unmount(path, unix.MNT_DETACH)
		os.Remove(path)
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	return path, nil
}

// Delete unmounts and removes the named namespace. The namespace itself
// disappears once no process or open file holds it. Deleting a namespace
// that does not exist succeeds.
func Delete(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	path := Path(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete netns %s: unmount %s: %w", name, path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}
