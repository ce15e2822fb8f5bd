package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// monitorWait bounds how long Apply waits for the monitor to catch up
// with the current generation before it reads the kernel instead.
const monitorWait = 200 * time.Millisecond

// changeMonitor follows the nftables notifications of the namespace and
// remembers the last generation that touched Tabby's table. With it, a
// commit by another program to another table (iptables-nft, docker, …)
// does not make Apply read the whole table back.
type changeMonitor struct {
	mu      sync.Mutex
	cond    *sync.Cond
	seen    uint32 // last generation whose end we read
	started bool   // seen and first are meaningful
	first   uint32 // transactions after this one were observed whole
	touched uint32 // last generation that touched our table
	lost    bool   // notifications were lost: trust nothing until a full read
	losses  int    // how often notifications were lost
	pending bool   // the transaction being read touched our table
	closed  bool
}

func newChangeMonitor() *changeMonitor {
	m := &changeMonitor{}
	m.cond = sync.NewCond(&m.mu)
	return m
}

// clean reports whether no generation after since, up to now, touched our
// table, waiting a little for notifications still in flight.
func (m *changeMonitor) clean(since, now uint32) bool {
	deadline := time.Now().Add(monitorWait)
	timer := time.AfterFunc(monitorWait, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	defer timer.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for !m.closed && !m.lost && (!m.started || int32(m.seen-now) < 0) {
		if m.started && int32(since-m.first) < 0 {
			return false // Run started after since: what happened is unknown
		}
		if time.Now().After(deadline) {
			return false
		}
		m.cond.Wait()
	}
	return !m.closed && !m.lost && m.started && int32(since-m.first) >= 0 && int32(m.touched-since) <= 0
}

// lossCount is read before a full read of the table; pass it to resynced.
func (m *changeMonitor) lossCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.losses
}

// resynced is called after a full read at generation gen: what happened
// up to it no longer matters — unless notifications were lost meanwhile.
func (m *changeMonitor) resynced(gen uint32, losses int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.losses == losses && m.lost {
		m.lost = false
		m.first, m.started = gen, true
		if int32(m.seen-gen) < 0 {
			m.seen = gen
		}
	}
}

func (m *changeMonitor) event(table string, family byte) {
	if table == policy.TableName && family == unix.NFPROTO_INET {
		m.mu.Lock()
		m.pending = true
		m.mu.Unlock()
	}
}

func (m *changeMonitor) generation(id uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending {
		m.touched = id
		m.pending = false
	}
	if !m.started {
		m.first, m.started = id, true
	}
	m.seen = id
	m.cond.Broadcast()
}

func (m *changeMonitor) overflow() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lost, m.pending = true, false
	m.losses++
	m.cond.Broadcast()
}

func (m *changeMonitor) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.cond.Broadcast()
}

// Run follows nftables change notifications until ctx ends, so that Apply
// re-reads the table only when someone else changed it, not whenever
// anyone committed anything. Without Run, Apply reads the table back after
// any foreign commit. Run returns nil when ctx ends.
func (d *Driver) Run(ctx context.Context) error {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: d.netnsFD})
	if err != nil {
		return fmt.Errorf("watch nftables: dial netlink: %w", err)
	}
	_ = c.SetReadBuffer(8 << 20)
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		c.Close()
		return fmt.Errorf("watch nftables: join the nftables group: %w", err)
	}
	m := newChangeMonitor()
	d.mu.Lock()
	d.monitor = m
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		if d.monitor == m {
			d.monitor = nil
		}
		d.mu.Unlock()
		m.close()
	}()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	d.log.Info("watching nftables changes")
	for {
		msgs, err := c.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// ENOBUFS: notifications were dropped; anything else: the
			// socket is unusable. Either way, stop trusting the cache.
			m.overflow()
			if isNoBufs(err) {
				d.log.Warn("nftables notifications lost; the next apply reads the table back")
				continue
			}
			return fmt.Errorf("watch nftables: %w", err)
		}
		for _, msg := range msgs {
			if len(msg.Data) < 4 || uint16(msg.Header.Type)>>8 != unix.NFNL_SUBSYS_NFTABLES {
				continue
			}
			typ := uint16(msg.Header.Type) & 0xff
			if typ == unix.NFT_MSG_NEWGEN {
				if id, ok := genID(msg.Data[4:]); ok {
					m.generation(id)
				}
				continue
			}
			// The DNS forwarder's element writes to learned sets are
			// not drift: the driver never diffs those elements.
			if typ == unix.NFT_MSG_NEWSETELEM || typ == unix.NFT_MSG_DELSETELEM {
				if set, ok := firstString(msg.Data[4:], unix.NFTA_SET_ELEM_LIST_SET); ok && policy.IsLearnedSet(set) {
					continue
				}
			}
			// Every object message names its table in attribute 1
			// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, …).
			if name, ok := firstString(msg.Data[4:], 1); ok {
				m.event(name, msg.Data[0])
			}
		}
	}
}

func genID(b []byte) (uint32, bool) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32(), true
		}
	}
	return 0, false
}

func firstString(b []byte, typ uint16) (string, bool) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return "", false
	}
	for ad.Next() {
		if ad.Type() == typ {
			return ad.String(), true
		}
	}
	return "", false
}

func isNoBufs(err error) bool {
	return errors.Is(err, unix.ENOBUFS)
}
