package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Fault-injection files in RootDir (tests own the data dir).
const (
	faultCrash        = "standin-crash"        // present at start: exit 1 at once
	faultUnready      = "standin-unready"      // present at start: never become ready
	faultHealthFail   = "standin-health-fail"  // a check name: /health reports it failing (read per request)
	faultExitAfter    = "standin-exit-after"   // a duration: exit 1 that long after start
	fileBalances      = "standin-balances"     // lines "ADDR ETH": /v2/keys/eth (read per request)
	fileErroredRuns   = "standin-errored-runs" // a count: errored runs in /v2/pipeline/runs (read per request)
	faultDialChain    = "standin-dial-chain"   // present at start: model the chain client (chainClient)
	rootDirMaxPerms   = 0o700
	rootDirProbeLabel = ".standin-probe-"
)

// prepareRootDir checks RootDir as the node does: it must be a directory the node can write, and like the real
// node (utils.EnsureDirAndMaxPerms) it narrows the permissions to 0700, which only the owner may do.
func prepareRootDir(dir string) error {
	fail := func(err error) error { return &inputError{Source: "RootDir", Key: dir, Err: err} }
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail(fmt.Errorf("%w: the directory does not exist", errMissing))
	case err != nil:
		return fail(fmt.Errorf("%w: %v", errUnreadable, err))
	case !st.IsDir():
		return fail(fmt.Errorf("%w: not a directory", errInvalid))
	}
	if perm := st.Mode().Perm(); perm&^rootDirMaxPerms != 0 {
		if err := os.Chmod(dir, perm&rootDirMaxPerms); err != nil {
			return fail(fmt.Errorf("%w: cannot restrict permissions to %o (uid %d must own it): %v", errNotWritable, rootDirMaxPerms, os.Getuid(), err))
		}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	probe := filepath.Join(dir, rootDirProbeLabel+hex.EncodeToString(b[:]))
	f, err := os.OpenFile(probe, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(fmt.Errorf("%w: uid %d cannot create a file: %v", errNotWritable, os.Getuid(), err))
	}
	_, werr := f.Write([]byte("probe"))
	cerr := f.Close()
	rerr := os.Remove(probe)
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fail(fmt.Errorf("%w: uid %d cannot write and remove a file: %v", errNotWritable, os.Getuid(), err))
	}
	return nil
}

// faults are the fault-injection files read at start.
type faults struct {
	Crash     bool
	Unready   bool
	ExitAfter time.Duration // 0: never
	DialChain bool          // model the chain client: without one, its check fails and balances are unknown
}

func readFaults(dir string) (faults, error) {
	var f faults
	f.Crash = exists(filepath.Join(dir, faultCrash))
	f.Unready = exists(filepath.Join(dir, faultUnready))
	f.DialChain = exists(filepath.Join(dir, faultDialChain))
	raw, err := readSmallFile(filepath.Join(dir, faultExitAfter))
	if err != nil || raw == "" {
		return f, err
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		return f, &inputError{Source: filepath.Join(dir, faultExitAfter), Err: fmt.Errorf("%w %q: want a positive duration", errInvalid, raw)}
	}
	f.ExitAfter = d
	return f, nil
}

// failingCheck is the check name in standin-health-fail, or "". A file the node cannot read is an error: a
// test that wrote it for another uid must not see a healthy node by mistake.
func failingCheck(dir string) (string, error) {
	return readSmallFile(filepath.Join(dir, faultHealthFail))
}

// ethKey is one row of /v2/keys/eth.
type ethKey struct {
	Address    string
	ETHBalance string // a whole number of wei, as the real node's API gives it (its assets.Eth marshals the big.Int)
}

// defaultKeyAddress is the stand-in's one ETH key when standin-balances is absent.
const defaultKeyAddress = "0x9b0ea8e4ba93ef3e91fd5b0f36b83e4cc6f4a6a1"

// readBalances reads standin-balances ("ADDR ETH" per line, # comments) or returns the default key.
func readBalances(dir string) ([]ethKey, error) {
	path := filepath.Join(dir, fileBalances)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []ethKey{{Address: defaultKeyAddress, ETHBalance: "1000000000000000000"}}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var keys []ethKey
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s line %d: want \"ADDRESS ETH\"", fileBalances, n)
		}
		eth, ok := new(big.Rat).SetString(fields[1])
		if !ok {
			return nil, fmt.Errorf("%s line %d: %q is not a number", fileBalances, n, fields[1])
		}
		wei := new(big.Rat).Mul(eth, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil)))
		if !wei.IsInt() {
			return nil, fmt.Errorf("%s line %d: %q is finer than a wei", fileBalances, n, fields[1])
		}
		keys = append(keys, ethKey{Address: fields[0], ETHBalance: wei.Num().String()})
	}
	return keys, sc.Err()
}

// erroredRuns is the count in standin-errored-runs (0 when absent).
func erroredRuns(dir string) (int, error) {
	raw, err := readSmallFile(filepath.Join(dir, fileErroredRuns))
	if err != nil || raw == "" {
		return 0, err
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %q is not a count", fileErroredRuns, raw)
	}
	return n, nil
}

// readSmallFile returns the trimmed content of a file, "" when it does not exist.
func readSmallFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
