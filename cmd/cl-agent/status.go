package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/control"
)

// controlTimeout bounds status; restart and stepdown wait for the node (see their own bounds).
const controlTimeout = 5 * time.Second

// controlClient reads only the socket path from the configuration: the operator's commands must work even when
// the rest of the file would no longer validate.
func controlClient(f flags) *control.Client {
	path := config.Default().Control.Socket
	if c, err := config.Load(*f.configPath); err == nil {
		path = c.Control.Socket
	}
	return control.NewClient(path)
}

func runStatus(ctx context.Context, args []string, out, errOut io.Writer) error {
	f := newFlags("status", errOut)
	asJSON := f.Bool("json", false, "print the status as JSON")
	if err := f.parse(args); err != nil {
		return err
	}
	c := controlClient(f)
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	s, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	printStatus(out, s)
	return nil
}

func printStatus(w io.Writer, s control.Status) {
	fmt.Fprintf(w, "role:      %s since %s (%s ago)\n", s.Role, s.Since.Format(time.RFC3339), time.Since(s.Since).Round(time.Second))
	fmt.Fprintf(w, "instance:  %s\n", s.InstanceID)
	switch {
	case !s.Lock.Enabled:
		fmt.Fprintf(w, "lock:      leader election disabled (this host is always active)\n")
	case s.Lock.Held:
		fmt.Fprintf(w, "lock:      held by this host (key %d)\n", s.Lock.Key)
	case s.Lock.Holder != "":
		fmt.Fprintf(w, "lock:      held by %s (key %d)\n", s.Lock.Holder, s.Lock.Key)
	default:
		fmt.Fprintf(w, "lock:      free (key %d)\n", s.Lock.Key)
	}
	fmt.Fprintf(w, "node:      %s %s ready=%t restarts=%d\n", s.Node.Container, s.Node.State, s.Node.Ready, s.Node.Restarts)
	if s.Node.Image != "" {
		fmt.Fprintf(w, "image:     %s\n", s.Node.Image)
	}
	printPairImage(w, s.Image)
	if s.Message != "" {
		fmt.Fprintf(w, "doing:     %s\n", s.Message)
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "problem:   %s\n", s.LastError)
	}
	if len(s.Checks) > 0 {
		fmt.Fprintf(w, "checks:\n")
	}
	for _, c := range s.Checks {
		result := "ok  "
		switch {
		case c.Skipped:
			result = "skip"
		case !c.OK:
			result = "FAIL"
		}
		fmt.Fprintf(w, "  %s %-20s %s (%s ago)\n", result, c.Name, c.Detail, time.Since(c.At).Round(time.Second))
	}
}

// printPairImage prints the pair's image as this host last read it, and the upgrade under way or last ended
// (README, "Upgrades"). A daemon that reports none of it prints nothing.
func printPairImage(w io.Writer, im control.Image) {
	if im == (control.Image{}) {
		return
	}
	pairImage := im.Pair
	if pairImage == "" {
		pairImage = "no image recorded yet (a new pair)"
	}
	if im.Highest != "" {
		pairImage += "; highest release " + im.Highest
	}
	if im.Policy != "" {
		pairImage += "; image.upgrade " + im.Policy
	}
	fmt.Fprintf(w, "pair:      %s\n", pairImage)
	if im.ReadError != "" {
		fmt.Fprintf(w, "           cannot read the pair's record: %s (shown: the last read)\n", im.ReadError)
	}
	u := im.Upgrade
	if u == nil {
		return
	}
	line := u.Phase + " " + u.Candidate
	if u.By != "" {
		line += " by " + u.By
	}
	if !u.At.IsZero() {
		line += fmt.Sprintf(" at %s (%s ago)", u.At.Format(time.RFC3339), time.Since(u.At).Round(time.Second))
	}
	fmt.Fprintf(w, "upgrade:   %s\n", line)
	if u.Reason != "" {
		fmt.Fprintf(w, "           %s\n", u.Reason)
	}
}

func runRestart(ctx context.Context, args []string, out, errOut io.Writer) error {
	f := newFlags("restart", errOut)
	timeout := f.Duration("timeout", 5*time.Minute, "how long to wait for the node to be ready again")
	if err := f.parse(args); err != nil {
		return err
	}
	c := controlClient(f)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	msg, err := c.Restart(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, msg)
	return nil
}

func runStepdown(ctx context.Context, args []string, out, errOut io.Writer) error {
	f := newFlags("stepdown", errOut)
	wait := f.Bool("wait", false, "return once the other host holds the lock")
	timeout := f.Duration("timeout", 2*time.Minute, "how long to wait")
	if err := f.parse(args); err != nil {
		return err
	}
	c := controlClient(f)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	msg, err := c.Stepdown(ctx, *wait)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, msg)
	return nil
}
