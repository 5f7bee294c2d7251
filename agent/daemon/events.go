package daemon

import (
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/agent/state"
)

// A phase is a state of the machine: it handles the events that reach the loop while it lasts and returns the state that follows: itself to
// stay, nil when the daemon ends (Daemon.result says how).
type phase interface {
	on(ev event) phase
}

// event is anything the loop is told: one of the types below.
type event any

// Events of the loop itself.
type (
	tickEvent     struct{} // the heartbeat (Options.Tick)
	rotateEvent   struct{} // time to look for rotated secrets (secrets.poll_interval)
	shutdownEvent struct{} // SIGTERM
)

// request is an operator's command, answered on reply.
type request struct {
	kind  state.Request
	reply chan error
}

// Results of work off the loop. Those of a term carry its number: a late one from an earlier term is ignored.
type (
	fetched struct { // the warm-up's secrets
		secrets secrets.NodeSecrets
		err     error
	}
	warmed struct {
		img     image.Image
		secrets secrets.NodeSecrets
		rec     pair.Record
		err     error
	}
	warmDue  struct{} // retry a failed warm-up
	holdOver struct{} // a stepdown's hold has passed
	acquired struct {
		term Term
		err  error
	}
	holderSeen leader.Holder // the campaign's view of who holds the lock
	termEnded  struct{ gen int }

	watchOpened struct {
		gen int
		w   Watch
		err error
	}
	takeoverChecked struct {
		gen  int
		gone bool
		why  string
		err  error
	}
	takeoverPollDue struct{ gen int }
	guardPassed     struct{ gen int }

	nodeChanged struct {
		gen    int
		status container.Status
	}
	nodeExited struct {
		gen int
		err error
	}
	// restartFetched: the operator's restart has its fresh secrets (or could not get them).
	restartFetched struct {
		gen   int
		reply chan error
		rc    rotationCheck
	}
	restarted struct {
		gen   int
		reply chan error // nil for a rotation's restart
		err   error
	}
	rotationChecked rotationCheck
	peerAnswered    struct {
		gen int
		peerAnswer
	}

	fenceDue     struct{}
	fenced       struct{ err error }
	stopDeadline struct{}
	released     struct{}
	reported     struct{} // a health report was written (or failed)
)
