package daemon

import (
	"context"
	"time"

	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/takeover"
)

// ElectorFrom adapts the leader package's elector to the daemon's interface.
func ElectorFrom(e *leader.Elector) Elector { return electorAdapter{e} }

type electorAdapter struct{ e *leader.Elector }

func (a electorAdapter) Acquire(ctx context.Context, onHolder func(leader.Holder)) (Term, error) {
	t, err := a.e.AcquireWatching(ctx, onHolder)
	if err != nil {
		return nil, err // not a typed nil Term
	}
	return t, nil
}

func (a electorAdapter) Holder(ctx context.Context) (leader.Holder, error) { return a.e.Holder(ctx) }

func (a electorAdapter) Hurry(d time.Duration) { a.e.Hurry(d) }

// TakeoverFrom adapts the takeover package's database side to the daemon's interface.
func TakeoverFrom(db *takeover.DB) Takeover { return takeoverAdapter{db} }

type takeoverAdapter struct{ *takeover.DB }

func (a takeoverAdapter) Watch(ctx context.Context) (Watch, error) {
	w, err := a.DB.Watch(ctx)
	if err != nil {
		return nil, err
	}
	return w, nil
}
