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
		var uid uint32
		cred, err := peerCred(c)
		if err == nil {
			uid = cred.Uid
			if uid == 0 || uid == uint32(os.Getuid()) {
				return c, nil
			}
		}
		l.log.Warn("refused a connection to the agent socket from a non-root caller", "uid", uid, "error", err)
		_ = c.Close()
	}
}

// peerCred reads the connecting process's credentials (PID, user) with
// SO_PEERCRED, as of when it connected.
func peerCred(c net.Conn) (*syscall.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	return cred, nil
}
