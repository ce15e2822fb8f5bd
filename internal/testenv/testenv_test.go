package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestPackagesAreInDepsList: every package a test failure tells the user
// to install is one `make deps` installs.
func TestPackagesAreInDepsList(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "scripts", "deps.txt"))
	if err != nil {
		t.Fatalf("read the package list: %v", err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if f := strings.Fields(line); len(f) > 0 {
			listed[f[0]] = true
		}
	}
	if len(listed) < 10 {
		t.Fatalf("scripts/deps.txt lists %d packages; want the full list (format changed?)", len(listed))
	}
	for tool, pkg := range packages {
		if !listed[pkg] {
			t.Errorf("%s comes from %s, which scripts/deps.txt does not list", tool, pkg)
		}
	}
}

// recorder is a testing.TB whose Skip and Fatal record the message and
// end the goroutine, as testing's do.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()          {}
func (r *recorder) Skip(args ...any) { r.skipped = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Skipf(f string, args ...any) {
	r.skipped = fmt.Sprintf(f, args...)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Fatalf(f string, args ...any) {
	r.failed = fmt.Sprintf(f, args...)
	runtime.Goexit()
}

// record runs gate on a recorder in a goroutine of its own.
func record(t *testing.T, gate func(testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		gate(r)
	}()
	<-done
	return r
}

// wantOnly checks that a full run failed, and a -short run skipped, with
// a message containing s.
func (r *recorder) wantOnly(t *testing.T, s string) {
	t.Helper()
	got := r.failed
	if testing.Short() {
		got = r.skipped
		if r.failed != "" {
			t.Errorf("under -short it failed (%q); want a skip", r.failed)
		}
	} else if r.skipped != "" {
		t.Errorf("a full run skipped (%q); want a failure", r.skipped)
	}
	if !strings.Contains(got, s) {
		t.Errorf("message %q; want it to contain %q", got, s)
	}
}

// TestNeedToolNamesThePackage: with bird missing from PATH, a full run
// fails with the package to install (a -short run skips with it).
func TestNeedToolNamesThePackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	r := record(t, func(tb testing.TB) { NeedTool(tb, "bird") })
	r.wantOnly(t, "apt-get install bird2")
}

// TestNeedToolUnknownName: a program testenv has no package for is a
// mistake in the test, even where it is installed.
func TestNeedToolUnknownName(t *testing.T) {
	r := record(t, func(tb testing.TB) { NeedTool(tb, "sh") })
	if !strings.Contains(r.failed, `no Debian package known for "sh"`) {
		t.Errorf("NeedTool(sh): failed %q; want a failure naming the unknown program", r.failed)
	}
}

// TestNeedCNIPluginsNamesThePackage: a missing reference plugin names
// containernetworking-plugins.
func TestNeedCNIPluginsNamesThePackage(t *testing.T) {
	r := record(t, func(tb testing.TB) { NeedCNIPlugins(tb, "tabby-no-such-plugin") })
	r.wantOnly(t, "apt-get install containernetworking-plugins")
}

// TestNeedRoot: as root nothing happens; otherwise a full run fails
// (saying how to run it) and -short skips.
func TestNeedRoot(t *testing.T) {
	r := record(t, NeedRoot)
	if os.Geteuid() == 0 {
		if r.skipped != "" || r.failed != "" {
			t.Errorf("as root: skipped %q, failed %q; want neither", r.skipped, r.failed)
		}
		return
	}
	r.wantOnly(t, "make test-short")
}
