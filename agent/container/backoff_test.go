package container

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

func TestNewSupervisorRefusesBackoffMaxBelowInitial(t *testing.T) {
	t.Parallel()
	_, err := NewSupervisor(Options{
		Engine:         &fakeEngine{},
		Config:         unitConfig(t),
		Image:          testImage,
		Render:         func(context.Context) (*nodefiles.Rendered, error) { return tomlRendered(), nil },
		BackoffInitial: 2 * time.Second,
		BackoffMax:     time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "BackoffMax 1s") || !strings.Contains(err.Error(), "BackoffInitial 2s") {
		t.Fatalf("NewSupervisor = %v; want an error naming BackoffMax 1s and BackoffInitial 2s", err)
	}
}
