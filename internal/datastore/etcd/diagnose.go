package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"time"
)

// probeTimeout bounds the diagnosis of one endpoint after New failed.
const probeTimeout = 500 * time.Millisecond

// diagnose explains why no endpoint answered, from a plain dial (and TLS
// handshake) to each: "connection refused", a TLS verification error...
// It returns "" when every endpoint accepts connections or times out, so
// the one-line error of New stays short when there is nothing to add.
func diagnose(endpoints []string, tc *tls.Config) string {
	var reasons []string
	for _, ep := range endpoints {
		if r := probe(ep, tc); r != "" {
			reasons = append(reasons, ep+": "+r)
		}
	}
	return strings.Join(reasons, "; ")
}

func probe(ep string, tc *tls.Config) string {
	u, err := url.Parse(ep)
	if err != nil {
		return ""
	}
	network, addr, serverName := "tcp", u.Host, u.Hostname()
	if u.Scheme == "unix" || u.Scheme == "unixs" {
		network, addr, serverName = "unix", u.Path, path.Base(u.Path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return reason(err)
	}
	defer conn.Close()
	if u.Scheme != "https" && u.Scheme != "unixs" || tc == nil {
		return ""
	}
	c := tc.Clone()
	if c.ServerName == "" {
		c.ServerName = serverName
	}
	tconn := tls.Client(conn, c)
	if err := tconn.HandshakeContext(ctx); err != nil {
		return reason(err)
	}
	// With TLS 1.3 a server rejects a client certificate only after the
	// handshake: send the HTTP/2 preface and see whether an alert comes back.
	_ = tconn.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := tconn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		return reason(err)
	}
	var b [1]byte
	if _, err := tconn.Read(b[:]); err != nil {
		return reason(err)
	}
	return ""
}

// reason keeps the part of a dial or TLS error an operator acts on.
func reason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ""
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) {
		return "TLS: " + ve.Err.Error()
	}
	s := err.Error()
	if _, rest, ok := strings.Cut(s, "remote error: tls: "); ok {
		return "TLS: the server rejected this client: " + oneLine(rest)
	}
	if _, rest, ok := strings.Cut(s, "tls: "); ok {
		return "TLS: " + oneLine(rest)
	}
	return ""
}
