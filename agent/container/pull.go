package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Pull bounds.
const (
	// DefaultPullInactivity: a pull that reports no progress for this long is abandoned.
	DefaultPullInactivity = 2 * time.Minute
	// DefaultPullTimeout bounds a whole pull (the node's image is a few hundred MB).
	DefaultPullTimeout = 30 * time.Minute
)

// pullMessage is one line of the engine's pull stream. Errors arrive in the stream, not as an HTTP status:
// a pull that "succeeds" at the HTTP level can still have failed.
type pullMessage struct {
	Status      string `json:"status"`
	ID          string `json:"id"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// EnsureImage pulls ref ("repo@sha256:…") unless the engine already has it. The pull is abandoned when the
// stream shows no progress for inactivity or the whole pull takes longer than total; an error in the stream
// fails it. After the stream ends, the image must be present.
func EnsureImage(ctx context.Context, e Engine, ref string, inactivity, total time.Duration, log *zap.Logger) error {
	present, err := e.ImagePresent(ctx, ref)
	if err != nil {
		return err
	}
	if present {
		return nil
	}
	log.Info("pulling the node image", zap.String("image", ref))
	start := time.Now()
	if err := pull(ctx, e, ref, inactivity, total); err != nil {
		return err
	}
	present, err = e.ImagePresent(ctx, ref)
	if err != nil {
		return err
	}
	if !present {
		return fmt.Errorf("pull %s: the engine reported success but does not have the image", ref)
	}
	log.Info("pulled the node image", zap.String("image", ref), zap.Duration("took", time.Since(start).Round(time.Millisecond)))
	return nil
}

func pull(ctx context.Context, e Engine, ref string, inactivity, total time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	var stalled atomic.Bool
	watchdog := time.AfterFunc(inactivity, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()
	explain := func(err error) error {
		switch {
		case stalled.Load():
			return fmt.Errorf("pull %s stalled: no progress for %s", ref, inactivity)
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("pull %s timed out after %s: %w", ref, total, err)
		}
		return err
	}

	stream, err := e.PullImage(ctx, ref)
	if err != nil {
		return explain(err)
	}
	defer stream.Close()
	dec := json.NewDecoder(stream)
	for {
		var m pullMessage
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return explain(fmt.Errorf("pull %s: read the engine's progress: %w", ref, err))
		}
		watchdog.Reset(inactivity)
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return fmt.Errorf("pull %s: %s", ref, m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return fmt.Errorf("pull %s: %s", ref, m.Error)
		}
	}
}
