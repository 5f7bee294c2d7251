package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// readyInspectEvery: while waiting for readiness the container is inspected at least this often, so a node
// that exits is noticed even when the events stream is broken.
const readyInspectEvery = time.Second

// readyClient is the HTTP client of the readiness probe: no proxy (the node is on loopback), no keep-alive (a
// restarted node is a new server), a deadline per request.
func readyClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is not 200
		},
	}
}

// waitReady polls the node's /readyz until it answers 200, the container stops (noticed through its events
// and an inspect at least every second: no blind waiting), or ReadyTimeout passes.
func (s *Supervisor) waitReady(ctx context.Context, id string) error {
	deadline := time.NewTimer(s.o.ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(s.o.ReadyPoll)
	defer tick.Stop()
	lastInspect := time.Now()
	for {
		code, last := s.probe(ctx)
		if code == http.StatusOK {
			return nil
		}
		checkNow := false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("the node was not ready within %s (last %s: %s)", s.o.ReadyTimeout, s.o.ReadyURL, last)
		case <-s.wake:
			checkNow = true
		case <-tick.C:
			checkNow = time.Since(lastInspect) >= readyInspectEvery
		}
		if checkNow {
			lastInspect = time.Now()
			if err := s.alive(ctx, id); err != nil {
				return err
			}
		}
	}
}

// probe makes one readiness request and returns the status code (0 when none) and a word on it for errors.
func (s *Supervisor) probe(ctx context.Context) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.o.ReadyURL, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := s.http.Do(req)
	if err != nil {
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) && uerr.Unwrap() != nil {
			err = uerr.Unwrap() // drop the repeated "Get <url>:"
		}
		return 0, err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, resp.Status
}

// alive fails when the container id is no longer the node's running container.
func (s *Supervisor) alive(ctx context.Context, id string) error {
	c, err := s.o.Engine.InspectContainer(ctx, s.name)
	switch {
	case errors.Is(err, ErrNotFound):
		return errors.New("the node's container disappeared before the node was ready")
	case err != nil:
		return err
	case c.ID != id:
		return fmt.Errorf("the node's container was replaced (now %.12s) before the node was ready", c.ID)
	case !c.Running:
		return fmt.Errorf("%w before it was ready", exitError(c))
	}
	return nil
}
