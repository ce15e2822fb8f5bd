package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/testenv"
)

// uniqueName returns a namespace name private to this test run.
func uniqueName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// newNS creates a namespace removed at the end of the test.
func newNS(t *testing.T, prefix string) string {
	t.Helper()
	name := uniqueName(t, prefix)
	path, err := Create(name)
	if err != nil {
		t.Fatalf("Create(%q): %v", name, err)
	}
	t.Cleanup(func() {
		if err := Delete(name); err != nil {
			t.Errorf("Delete(%q): %v", name, err)
		}
	})
	return path
}

// nsID identifies a namespace file by device and inode.
type nsID struct{ dev, ino uint64 }

func idOf(t *testing.T, path string) nsID {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return nsID{st.Dev, st.Ino}
}

// allThreadsIn fails the test if any thread of this process is not in the
// namespace want.
func allThreadsIn(t *testing.T, want nsID) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		p := fmt.Sprintf("/proc/%d/task/%s/ns/net", os.Getpid(), task.Name())
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue // thread exited meanwhile
		}
		if got := (nsID{st.Dev, st.Ino}); got != want {
			t.Errorf("thread %s is in netns %v, want %v", task.Name(), got, want)
		}
	}
}

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "ok", in: "tabby-h1"},
		{name: "empty", in: "", wantErr: "non-empty"},
		{name: "dot", in: ".", wantErr: "non-empty"},
		{name: "dotdot", in: "..", wantErr: "non-empty"},
		{name: "slash", in: "a/b", wantErr: "'/'"},
		{name: "escape", in: "../etc", wantErr: "'/'"},
		{name: "nul", in: "a\x00b", wantErr: "NUL"},
		{name: "long", in: strings.Repeat("x", 256), wantErr: "255"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validName(tc.in)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("validName(%q) = %v, want nil", tc.in, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("validName(%q) = %v, want error containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestDoRejectsNonNetNS(t *testing.T) {
	regular := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{name: "empty", path: "", wantErr: "empty"},
		{name: "missing", path: "/nonexistent/netns", wantErr: "no such file"},
		{name: "regular file", path: regular, wantErr: "not a namespace"},
		{name: "mount namespace", path: "/proc/self/ns/mnt", wantErr: "not a network namespace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			err := Do(tc.path, func() error { called = true; return nil })
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Do(%q) = %v, want error containing %q", tc.path, err, tc.wantErr)
			}
			if called {
				t.Errorf("fn was called for %q", tc.path)
			}
			if Exists(tc.path) {
				t.Errorf("Exists(%q) = true, want false", tc.path)
			}
		})
	}
}

func TestPrivilegedCreateDelete(t *testing.T) {
	requireRoot(t)
	name := uniqueName(t, "tbyt-nscd-")
	path, err := Create(name)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { Delete(name) })
	if want := Path(name); path != want {
		t.Errorf("Create path = %q, want %q", path, want)
	}
	if !Exists(path) {
		t.Fatalf("Exists(%q) = false after Create", path)
	}
	if _, err := Create(name); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second Create = %v, want error containing %q", err, "already exists")
	}
	if !Exists(path) {
		t.Fatalf("a failed second Create removed %q", path)
	}

	// iproute2 sees it as one of its own.
	ip := testenv.NeedTool(t, "ip")
	out, err := exec.Command(ip, "netns", "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), name) {
		t.Errorf("ip netns list = %q, %v; want it to list %s", out, err, name)
	}
	if out, err := exec.Command(ip, "-n", name, "-o", "link", "show", "lo").CombinedOutput(); err != nil {
		t.Errorf("ip -n %s link show lo: %v: %s", name, err, out)
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self := idOf(t, threadNSPath())
	target := idOf(t, path)
	if self == target {
		t.Fatalf("new namespace is the caller's namespace")
	}
	var inside nsID
	if err := Do(path, func() error { inside = idOf(t, threadNSPath()); return nil }); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if inside != target {
		t.Errorf("namespace inside Do = %v, want %v", inside, target)
	}
	if got := idOf(t, threadNSPath()); got != self {
		t.Errorf("caller thread namespace after Do = %v, want %v", got, self)
	}

	if err := Delete(name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if Exists(path) {
		t.Errorf("Exists(%q) = true after Delete", path)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after Delete = %v, want not exist", err)
	}
	if err := Delete(name); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
	if err := Do(path, func() error { return nil }); err == nil {
		t.Errorf("Do on deleted namespace = nil, want error")
	}
}

func TestPrivilegedCreateBadName(t *testing.T) {
	requireRoot(t)
	for _, name := range []string{"", "..", "a/b"} {
		if _, err := Create(name); err == nil {
			t.Errorf("Create(%q) = nil error, want error", name)
		}
		if err := Delete(name); err == nil {
			t.Errorf("Delete(%q) = nil error, want error", name)
		}
	}
}

func TestPrivilegedDoReturnsErrorAndNests(t *testing.T) {
	requireRoot(t)
	a, b := newNS(t, "tbyt-nsa-"), newNS(t, "tbyt-nsb-")
	want := errors.New("boom")
	if err := Do(a, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do error = %v, want %v", err, want)
	}
	err := Do(a, func() error {
		if got, want := idOf(t, threadNSPath()), idOf(t, a); got != want {
			return fmt.Errorf("outer: in %v, want %v", got, want)
		}
		if err := Do(b, func() error {
			if got, want := idOf(t, threadNSPath()), idOf(t, b); got != want {
				return fmt.Errorf("inner: in %v, want %v", got, want)
			}
			return nil
		}); err != nil {
			return err
		}
		if got, want := idOf(t, threadNSPath()), idOf(t, a); got != want {
			return fmt.Errorf("outer after inner: in %v, want %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPrivilegedDoNeverLeaksNamespace(t *testing.T) {
	requireRoot(t)
	orig := idOf(t, fmt.Sprintf("/proc/%d/ns/net", os.Getpid()))
	paths := []string{newNS(t, "tbyt-nsl1-"), newNS(t, "tbyt-nsl2-")}
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for i := range 25 {
				p := paths[(g+i)%len(paths)]
				if err := Do(p, func() error { runtime.Gosched(); return nil }); err != nil {
					errc <- err
					return
				}
				var st unix.Stat_t
				if err := unix.Stat(threadNSPath(), &st); err != nil {
					errc <- err
					return
				}
				if got := (nsID{st.Dev, st.Ino}); got != orig {
					errc <- fmt.Errorf("caller thread in %v after Do, want %v", got, orig)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	allThreadsIn(t, orig)
}

func TestPrivilegedDoPanicRestores(t *testing.T) {
	requireRoot(t)
	orig := idOf(t, fmt.Sprintf("/proc/%d/ns/net", os.Getpid()))
	path := newNS(t, "tbyt-nsp-")
	func() {
		defer func() {
			r := recover()
			p, ok := r.(*PanicError)
			if !ok || p.Value != "kaboom" || !strings.Contains(string(p.Stack), "netns_test.go") {
				t.Errorf("recovered %#v, want *PanicError with value %q and the test's stack", r, "kaboom")
			}
		}()
		Do(path, func() error { panic("kaboom") })
		t.Error("Do returned after a panic in fn")
	}()
	allThreadsIn(t, orig)
}

// TestPrivilegedDoDiscardsThreadWhenRestoreFails simulates a failure to
// switch back and checks that the thread which stayed in the namespace is
// destroyed rather than reused.
func TestPrivilegedDoDiscardsThreadWhenRestoreFails(t *testing.T) {
	requireRoot(t)
	orig := idOf(t, fmt.Sprintf("/proc/%d/ns/net", os.Getpid()))
	path := newNS(t, "tbyt-nsr-")

	realSetns := setns
	t.Cleanup(func() { setns = realSetns })
	calls := 0
	setns = func(fd int) error {
		calls++
		if calls == 2 { // the switch back
			return unix.EPERM
		}
		return realSetns(fd)
	}
	var tid int
	err := Do(path, func() error { tid = unix.Gettid(); return nil })
	setns = realSetns
	if err == nil || !strings.Contains(err.Error(), "thread discarded") {
		t.Fatalf("Do = %v, want error containing %q", err, "thread discarded")
	}
	task := fmt.Sprintf("/proc/%d/task/%d", os.Getpid(), tid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(task); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d, left in the namespace, still exists", tid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	allThreadsIn(t, orig)
}

// TestPrivilegedGone covers each way a namespace path can end: removed,
// unmounted but left as a file, a process's namespace after it exits; and
// the paths that still are namespaces.
func TestPrivilegedGone(t *testing.T) {
	requireRoot(t)
	gone := func(path string) bool {
		t.Helper()
		g, err := Gone(path)
		if err != nil {
			t.Fatalf("Gone(%q): %v", path, err)
		}
		return g
	}
	name := uniqueName(t, "tbyt-gone-")
	path, err := Create(name)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { Delete(name) })
	if gone(path) {
		t.Errorf("Gone(%q) = true for a live bind-mounted namespace, want false", path)
	}
	if gone("/proc/self/ns/net") {
		t.Errorf("Gone(/proc/self/ns/net) = true, want false")
	}
	// Unmounted but the file left behind: no namespace is there.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	if !gone(path) {
		t.Errorf("Gone(%q) = false for an unmounted, not removed, namespace file, want true", path)
	}
	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if !gone(path) {
		t.Errorf("Gone(%q) = false after Delete, want true", path)
	}

	// A process's namespace: there while it runs, gone once it exited.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pidPath := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	if gone(pidPath) {
		t.Errorf("Gone(%q) = true while the process runs, want false", pidPath)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !gone(pidPath) {
		t.Errorf("Gone(%q) = false after the process exited, want true", pidPath)
	}
	if _, err := Gone(""); err == nil {
		t.Errorf("Gone(\"\") = nil error, want one")
	}
}

// The main goroutine keeps the main thread for itself, so no test runs Do
// on it: when a goroutine ends while locked to the main thread, the Go
// runtime cannot let that thread exit and wedges it instead, and
// TestPrivilegedDoDiscardsThreadWhenRestoreFails would find the thread
// still there (it did, now and then, under load).
func init() { runtime.LockOSThread() }
