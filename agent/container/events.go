package container

import (
	"context"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/backoff"
)

// Resubscription to Docker events after the stream broke (the engine restarted).
const (
	eventsRetryInitial = 100 * time.Millisecond
	eventsRetryMax     = 5 * time.Second
)

// watchEvents turns the node container's lifecycle events into wake-ups of the supervisor until ctx ends.
// Events are hints: the supervisor inspects the container when woken, so a lost, late or duplicated event
// does no harm. When the stream breaks it waits for the engine to answer a ping (backing off), subscribes
// again and wakes the supervisor, which then sees through an inspect whatever happened while it was blind.
func (s *Supervisor) watchEvents(ctx context.Context) {
	b := backoff.New(eventsRetryInitial, eventsRetryMax)
	clock := clockwork.NewRealClock()
	for first := true; ; first = false {
		events, errc := s.o.Engine.ContainerEvents(ctx, s.name)
		if !first {
			s.wakeUp()
		}
		err := s.forward(ctx, events, errc)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("the Docker events stream broke; subscribing again", zap.Error(err))
		s.wakeUp()
		for {
			if b.Wait(ctx, clock) != nil {
				return
			}
			if err := s.o.Engine.Ping(ctx); err == nil {
				break
			} else {
				s.log.Debug("the Docker engine does not answer yet", zap.Error(err))
			}
		}
		b.Reset()
	}
}

// forward passes events on as wake-ups until the stream ends and returns its error.
func (s *Supervisor) forward(ctx context.Context, events <-chan Event, errc <-chan error) error {
	for {
		select {
		case ev := <-events:
			s.log.Debug("container event", zap.String("action", ev.Action), zap.String("id", short(ev.ContainerID)),
				zap.String("exit_code", ev.ExitCode))
			s.wakeUp()
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wakeUp asks the supervisor to look at the container; wake-ups coalesce.
func (s *Supervisor) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
