package lab

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Usage is the memory the lab's processes use.
type Usage struct {
	Processes int `json:"processes"`
	// RSS and PSS are sums in bytes; PSS shares pages between the
	// processes that map them, so it adds up to what the lab costs.
	RSS uint64 `json:"rss"`
	PSS uint64 `json:"pss"`
	// ByCommand sums PSS per command name (tabby, sleep, …).
	ByCommand map[string]uint64 `json:"byCommand"`
}

// Usage sums the memory of every process inside the lab's namespaces
// (datastore, Mesos state server, DNS, agents, containers). Kernel memory
// of namespaces, links and routes is not included.
func (l *Lab) Usage() (Usage, error) {
	nss, err := labNamespaces(l.st.Name)
	if err != nil {
		return Usage{}, err
	}
	inodes := map[uint64]bool{}
	for _, ns := range nss {
		if ino, err := nsInode(nsPath(ns)); err == nil {
			inodes[ino] = true
		}
	}
	u := Usage{ByCommand: map[string]uint64{}}
	for _, p := range procsInNamespaces(inodes) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p.PID))
		if err != nil {
			continue
		}
		rss, pss := parseSmapsRollup(data)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.PID))
		u.Processes++
		u.RSS += rss
		u.PSS += pss
		u.ByCommand[strings.TrimSpace(string(comm))] += pss
	}
	return u, nil
}

// parseSmapsRollup returns the Rss and Pss lines of smaps_rollup, in bytes.
func parseSmapsRollup(data []byte) (rss, pss uint64) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			rss = n * 1024
		case "Pss:":
			pss = n * 1024
		}
	}
	return rss, pss
}
