package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netns"
)

// EtcNetnsDir is where `ip netns exec` finds per-namespace /etc files.
const EtcNetnsDir = "/etc/netns"

func nsPath(ns string) string { return netns.Path(ns) }

func deleteNamespace(ns string) error {
	if err := netns.Delete(ns); err != nil {
		return err
	}
	return nil
}

// writeEtcResolv writes /etc/netns/NS/resolv.conf, which `ip netns exec`
// mounts over /etc/resolv.conf for processes in namespace ns.
func writeEtcResolv(ns string, d *DNS) error {
	dir := filepath.Join(EtcNetnsDir, ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write resolv.conf of %s: %w", ns, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(resolvConf(d)), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf of %s: %w", ns, err)
	}
	return nil
}

// netnsEtcDirs lists /etc/netns/tlab-NAME-* directories.
func netnsEtcDirs(name string) []string {
	m, _ := filepath.Glob(filepath.Join(EtcNetnsDir, NamespacePrefix(name)+"*"))
	return m
}

// parseMountPoints returns the mount points listed in /proc/PID/mountinfo
// contents (field 5, with the kernel's octal escapes undone).
func parseMountPoints(mountinfo string) []string {
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		out = append(out, unescapeOctal(f[4]))
	}
	return out
}

// unescapeOctal undoes the \NNN escapes of /proc mount tables.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsUnder lists this mount namespace's mount points at or below dir,
// deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, mp := range parseMountPoints(string(data)) {
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unmount(mp string) error {
	if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", mp, err)
	}
	return nil
}

// bindMount makes target (a file, created if missing) a bind mount of src.
func bindMount(src, target string) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.Mount(src, target, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(target)
		return fmt.Errorf("bind mount %s at %s: %w", src, target, err)
	}
	return nil
}

// makeShared makes dir a mount point of its own with shared propagation.
func makeShared(dir string) error {
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}
