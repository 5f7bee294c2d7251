package testenv

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// listensOn reports whether process pid holds a listening TCP socket on port (any address, IPv4 or IPv6). It reads
// /proc: the socket inodes among the process's descriptors, matched against the kernel's socket tables.
func listensOn(pid, port int) (bool, error) {
	inodes, err := socketInodes(pid)
	if err != nil {
		return false, err
	}
	if len(inodes) == 0 {
		return false, nil
	}
	for _, table := range []string{"tcp", "tcp6"} {
		found, err := listenerIn(fmt.Sprintf("/proc/%d/net/%s", pid, table), port, inodes)
		if err != nil || found {
			return found, err
		}
	}
	return false, nil
}

func socketInodes(pid int) (map[string]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list descriptors of pid %d: %w", pid, err)
	}
	inodes := make(map[string]bool)
	for _, e := range entries {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	return inodes, nil
}

// listenerIn scans one /proc/net/tcp{,6} table for a LISTEN entry on port whose inode is in inodes.
func listenerIn(path string, port int, inodes map[string]bool) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return false, nil // no IPv6 in this kernel
		}
		return false, err
	}
	defer f.Close()
	const listenState = "0A"
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != listenState || !inodes[fields[9]] {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
			return true, nil
		}
	}
	return false, sc.Err()
}
