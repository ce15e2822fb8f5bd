package flowlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/flows"
)

// UseKernel adds the kernel sources: conntrack events (allowed flows)
// and the NFLOG group of the deny paths. Call it before Run; the agent's
// network namespace is where they read.
func (c *Collector) UseKernel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sources = append(c.sources, &ctSource{c: c, tracked: map[uint32]*tracked{}}, &nflogSource{c: c})
}

// ctAcctSysctl turns on conntrack's per-flow packet and byte counters
// (for this network namespace; counters start with the flows created
// afterwards).
const ctAcctSysctl = "/proc/sys/net/netfilter/nf_conntrack_acct"

// tracked is a conntrack entry of a local endpoint: its records as
// attributed when it was new (counters zero) and the counters reported so
// far.
type tracked struct {
	recs           []flows.FlowRecord
	packets, bytes uint64 // both directions, reported so far
}

// ctSource follows conntrack: a new entry of a local endpoint is
// attributed once and recorded; its counters are read at every window
// (a dump) and when it is destroyed.
type ctSource struct {
	c       *Collector
	mu      sync.Mutex
	tracked map[uint32]*tracked
	dump    *conntrack.Conn
}

func (s *ctSource) run(ctx context.Context) error {
	if err := os.WriteFile(ctAcctSysctl, []byte("1"), 0o644); err != nil {
		s.c.log.Warn("cannot turn on conntrack accounting: flows will have no counters", "error", err)
	}
	dump, err := conntrack.Dial(nil)
	if err != nil {
		return fmt.Errorf("conntrack: dial: %w", err)
	}
	s.mu.Lock()
	s.dump = dump
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.dump = nil
		s.mu.Unlock()
		dump.Close()
	}()
	return listenCT(ctx, func(ev *ctEvent) { s.event(ev, time.Now()) })
}

func ctFlow(ev *ctEvent, now time.Time) *flow {
	o, r := ev.orig, ev.reply
	fl := &flow{
		proto: o.proto, src: o.src.Unmap(), dst: r.src.Unmap(),
		sport: o.sport, dport: r.sport,
		icmpType: o.icmpType, icmpCode: o.icmpCode,
		start: now, end: now,
	}
	fl.family = 4
	if fl.src.Is6() {
		fl.family = 6
	}
	return fl
}

func (s *ctSource) event(ev *ctEvent, now time.Time) {
	if !ev.destroy {
		fl := ctFlow(ev, now)
		recs := s.c.attr.Attribute(fl, now)
		if len(recs) == 0 {
			return
		}
		s.c.add(true, recs...)
		s.mu.Lock()
		if len(s.tracked) < s.c.cfg.MaxTracked {
			s.tracked[ev.id] = &tracked{recs: recs}
		}
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	t, ok := s.tracked[ev.id]
	delete(s.tracked, ev.id)
	s.mu.Unlock()
	if ok {
		s.counters(t, ev.origPackets+ev.replyPackets, ev.origBytes+ev.replyBytes, now)
	}
}

// counters records what a tracked flow sent since it was last reported,
// given its totals.
func (s *ctSource) counters(t *tracked, p, b uint64, now time.Time) {
	if p <= t.packets {
		return
	}
	dp, db := p-t.packets, b-t.bytes
	t.packets, t.bytes = p, b
	for _, r := range t.recs {
		r.Start, r.End, r.Packets, r.Bytes = now, now, dp, db
		s.c.add(false, r)
	}
}

// ctCountSysctl is the number of conntrack entries of this namespace.
const ctCountSysctl = "/proc/sys/net/netfilter/nf_conntrack_count"

// poll reads the counters of every tracked flow (at each window). The
// dump holds the whole table in memory for a moment, so while the table
// is much larger than what is tracked (a flood of short flows) it is
// skipped: those flows' counters come with their DESTROY events.
func (s *ctSource) poll() {
	s.mu.Lock()
	dump, n := s.dump, len(s.tracked)
	s.mu.Unlock()
	if dump == nil || n == 0 {
		return
	}
	if b, err := os.ReadFile(ctCountSysctl); err == nil {
		if total, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && total > 4*s.c.cfg.MaxTracked {
			s.c.log.Debug("conntrack table too large to dump this window", "entries", total)
			return
		}
	}
	fs, err := dump.Dump(nil)
	if err != nil {
		s.c.log.Debug("conntrack dump failed", "error", err)
		return
	}
	now := time.Now()
	for i := range fs {
		s.mu.Lock()
		t, ok := s.tracked[fs[i].ID]
		s.mu.Unlock()
		if ok {
			f := &fs[i]
			s.counters(t, f.CountersOrig.Packets+f.CountersReply.Packets, f.CountersOrig.Bytes+f.CountersReply.Bytes, now)
		}
	}
}

// NFLOG (nfnetlink_log) constants, from linux/netfilter/nfnetlink_log.h.
const (
	nfulnlMsgPacket = 0
	nfulnlMsgConfig = 1

	nfulaCfgCmd  = 1
	nfulaCfgMode = 2
	cfgCmdBind   = 1
	cfgCmdUnbind = 2
	copyPacket   = 2

	nfulaPacketHdr  = 1
	nfulaIfIndexIn  = 4
	nfulaIfIndexOut = 5
	nfulaPayload    = 9
	nfulaPrefix     = 10
	nflogCopyRange  = 128
	hookPrerouting  = 0
	hookLocalIn     = 1
	hookForward     = 2
	hookLocalOut    = 3
)

// nflogSource reads the denied packets the ruleset logs to its group.
type nflogSource struct {
	c      *Collector
	ifMu   sync.Mutex
	ifName map[uint32]string
}

func (s *nflogSource) config(conn *netfilter.Conn, family uint8, attrs ...netfilter.Attribute) error {
	h := netfilter.Header{SubsystemID: netfilter.NFSubsysULOG, MessageType: netfilter.MessageType(nfulnlMsgConfig),
		Family: netfilter.ProtoFamily(family), ResourceID: s.c.cfg.NFLogGroup,
		Flags: netlink.Request | netlink.Acknowledge}
	m, err := netfilter.MarshalNetlink(h, attrs)
	if err != nil {
		return err
	}
	_, err = conn.Query(m)
	return err
}

func (s *nflogSource) run(ctx context.Context) error {
	conn, err := netfilter.Dial(nil)
	if err != nil {
		return fmt.Errorf("nflog: dial: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, nflogCopyRange)
	mode[4] = copyPacket
	if err := s.config(conn, unix.AF_UNSPEC, netfilter.Attribute{Type: nfulaCfgCmd, Data: []byte{cfgCmdBind}}); err != nil {
		return fmt.Errorf("nflog: bind group %d: %w", s.c.cfg.NFLogGroup, err)
	}
	if err := s.config(conn, unix.AF_UNSPEC, netfilter.Attribute{Type: nfulaCfgMode, Data: mode}); err != nil {
		return fmt.Errorf("nflog: set copy mode of group %d: %w", s.c.cfg.NFLogGroup, err)
	}
	s.c.log.Info("reading denied packets", "nflog-group", s.c.cfg.NFLogGroup)
	for {
		msgs, err := conn.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if isNoBufs(err) {
				continue
			}
			return fmt.Errorf("nflog: receive: %w", err)
		}
		now := time.Now()
		for _, m := range msgs {
			h, attrs, err := netfilter.UnmarshalNetlink(m)
			if err != nil || h.SubsystemID != netfilter.NFSubsysULOG || h.MessageType != nfulnlMsgPacket {
				continue
			}
			if fl := s.packet(attrs, now); fl != nil {
				s.c.add(true, s.c.attr.Attribute(fl, now)...)
			}
		}
	}
}

func isNoBufs(err error) bool {
	var oe *netlink.OpError
	if e, ok := err.(*netlink.OpError); ok {
		oe = e
	}
	return oe != nil && oe.Err == unix.ENOBUFS
}

// packet reads one logged packet.
func (s *nflogSource) packet(attrs []netfilter.Attribute, now time.Time) *flow {
	fl := &flow{denied: true, start: now, end: now, packets: 1}
	var payload []byte
	for _, a := range attrs {
		switch a.Type {
		case nfulaPacketHdr:
			if len(a.Data) >= 3 {
				switch a.Data[2] {
				case hookPrerouting:
					fl.hook = policy.HookPrerouting
				case hookLocalIn:
					fl.hook = policy.HookInput
				case hookForward:
					fl.hook = policy.HookForward
				case hookLocalOut:
					fl.hook = policy.HookOutput
				}
			}
		case nfulaIfIndexIn:
			if len(a.Data) == 4 {
				fl.iif = s.name(binary.BigEndian.Uint32(a.Data))
			}
		case nfulaIfIndexOut:
			if len(a.Data) == 4 {
				fl.oif = s.name(binary.BigEndian.Uint32(a.Data))
			}
		case nfulaPayload:
			payload = a.Data
		}
	}
	if fl.hook == "" || !parseIP(payload, fl) {
		return nil
	}
	return fl
}

// parseIP reads addresses, protocol and ports (or ICMP type and code)
// from the start of an IP packet.
func parseIP(b []byte, fl *flow) bool {
	if len(b) < 1 {
		return false
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0x0f) * 4
		if len(b) < 20 || ihl < 20 || len(b) < ihl {
			return false
		}
		fl.family, fl.proto = 4, b[9]
		fl.src, _ = netip.AddrFromSlice(b[12:16])
		fl.dst, _ = netip.AddrFromSlice(b[16:20])
		fl.bytes = uint64(binary.BigEndian.Uint16(b[2:4]))
		l4 = b[ihl:]
	case 6:
		if len(b) < 40 {
			return false
		}
		fl.family, fl.proto = 6, b[6]
		fl.src, _ = netip.AddrFromSlice(b[8:24])
		fl.dst, _ = netip.AddrFromSlice(b[24:40])
		fl.bytes = uint64(binary.BigEndian.Uint16(b[4:6])) + 40
		l4 = b[40:]
	default:
		return false
	}
	switch fl.proto {
	case 6, 17, 132:
		if len(l4) >= 4 {
			fl.sport, fl.dport = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
		}
	case 1, 58:
		if len(l4) >= 2 {
			fl.icmpType, fl.icmpCode = l4[0], l4[1]
		}
	}
	return true
}

func (s *nflogSource) name(idx uint32) string {
	s.ifMu.Lock()
	defer s.ifMu.Unlock()
	if n, ok := s.ifName[idx]; ok {
		return n
	}
	ifc, err := net.InterfaceByIndex(int(idx))
	if err != nil {
		return ""
	}
	if s.ifName == nil || len(s.ifName) > 4096 {
		s.ifName = map[uint32]string{}
	}
	s.ifName[idx] = ifc.Name
	return ifc.Name
}
