package agent

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"syscall"

	"github.com/tabbynet/tabby/internal/netns"
)

// The runtime hands the plugin CNI_NETNS as a path in its own mount
// namespace. An agent in another mount namespace (a containerised agent,
// or a runtime under `ip netns exec`) may see nothing there, or an empty
// file. So the agent opens the path as its caller sees it: through
// /proc/PID/root of the plugin process, whose PID the socket's peer
// credentials give. The plugin waits for the answer, so that PID is alive
// while the path is opened, and the open namespace is then used through
// the agent's own fd for the rest of the request.

type callerPIDKey struct{}

// withCaller records the connecting process's PID (SO_PEERCRED) in the
// context of the requests of connection c; see http.Server.ConnContext.
func withCaller(ctx context.Context, c net.Conn) context.Context {
	cred, err := peerCred(c)
	if err != nil || cred.Pid <= 0 {
		return ctx
	}
	return context.WithValue(ctx, callerPIDKey{}, int(cred.Pid))
}

func callerPID(ctx context.Context) int {
	pid, _ := ctx.Value(callerPIDKey{}).(int)
	return pid
}

// callerNetNS returns a path by which this process reaches the network
// namespace that path names in the caller's mount namespace, and a func
// to call when the request is done. When the caller shares the agent's
// mount namespace (or is unknown: not on the socket, or in a PID
// namespace the agent cannot see), that is path itself. Otherwise it is
// the caller's /proc/PID/root/path, opened now and then used through the
// agent's fd (/proc/self/fd/N), so it stays valid for the whole request.
// If opening fails, the translated path is returned unopened, and the
// caller's next use of it reports the error (DEL of a gone namespace
// still succeeds).
func callerNetNS(ctx context.Context, path string) (string, func()) {
	pid := callerPID(ctx)
	if path == "" || pid == 0 || !filepath.IsAbs(path) || sameMountNS(pid) {
		return path, func() {}
	}
	seen := filepath.Join(fmt.Sprintf("/proc/%d/root", pid), path)
	f, err := netns.Open(seen)
	if err != nil {
		return seen, func() {}
	}
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), func() { _ = f.Close() }
}

// sameMountNS reports whether process pid is in this process's mount
// namespace. When either cannot be read it answers true: the path is then
// used as given, as before.
func sameMountNS(pid int) bool {
	var self, peer syscall.Stat_t
	if syscall.Stat("/proc/self/ns/mnt", &self) != nil || syscall.Stat(fmt.Sprintf("/proc/%d/ns/mnt", pid), &peer) != nil {
		return true
	}
	return self.Dev == peer.Dev && self.Ino == peer.Ino
}
