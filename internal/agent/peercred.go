package agent

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
)

// rootOnlyListener accepts unix connections only from root (or the agent's
// own user): the socket's mode 0600 already keeps others out, and this
// holds even if the file's mode or owner is changed by mistake.
type rootOnlyListener struct {
	net.Listener
	log *slog.Logger
}

func (l rootOnlyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == 0 || uid == uint32(os.Getuid())) {
			return c, nil
		}
		l.log.Warn("refused a connection to the agent socket from a non-root caller", "uid", uid, "error", err)
		_ = c.Close()
	}
}

// peerUID reads the connecting process's user with SO_PEERCRED.
func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return cred.Uid, nil
}
