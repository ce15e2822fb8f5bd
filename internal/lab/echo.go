package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// TCPEcho checks that a TCP connection from container a reaches a
// listener on b's address and carries a message there and back, within
// 10 s.
func TCPEcho(a, b *Container) error { return TCPEchoIn(a.NetNS, b.NetNS, b.IP()) }

// TCPEchoIn is TCPEcho between two named network namespaces: from dials
// a listener on addr in to (IPv4 or IPv6, as addr is).
func TCPEchoIn(from, to string, addr netip.Addr) error {
	ln, err := ListenIn(to, "tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.CopyN(conn, conn, 5)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := DialIn(ctx, from, "tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("tabby")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil || !bytes.Equal(buf, []byte("tabby")) {
		return fmt.Errorf("echo: got %q: %v", buf, err)
	}
	return nil
}
