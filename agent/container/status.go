package container

import "time"

// State is what the supervisor is doing with the node.
type State string

const (
	// StateStopped: not supervised (before Run, and after Run returned).
	StateStopped State = "stopped"
	// StateStarting: pulling the image, rendering the files, creating and starting the container.
	StateStarting State = "starting"
	// StateRunning: the container runs; the node is not ready (yet).
	StateRunning State = "running"
	// StateReady: /readyz answered 200; the files are shredded.
	StateReady State = "ready"
	// StateBackoff: the last start failed or the node stopped; the next start is at RetryAt.
	StateBackoff State = "backoff"
	// StateFailed: a failure that retrying cannot fix (configuration, secrets); Run returned it.
	StateFailed State = "failed"
)

// Status is a snapshot of the node for `cl-agent status` and the health endpoint.
type Status struct {
	State       State     `json:"state"`
	Container   string    `json:"container"`
	ContainerID string    `json:"container_id,omitempty"`
	Image       string    `json:"image"`  // repository:tag@digest
	Digest      string    `json:"digest"` // what runs
	Ready       bool      `json:"ready"`
	LastError   string    `json:"last_error,omitempty"`
	Restarts    int       `json:"restarts"` // container starts after the first, this run of the agent
	Since       time.Time `json:"since"`    // when State was entered
	RetryAt     time.Time `json:"retry_at,omitzero"`
}

// Status returns the current snapshot.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// update changes the status under the lock and reports it to Options.OnStatus outside it.
func (s *Supervisor) update(change func(st *Status)) {
	s.mu.Lock()
	before := s.status.State
	change(&s.status)
	st := &s.status
	st.Ready = st.State == StateReady
	if st.State != before {
		st.Since = time.Now()
	}
	if st.State != StateBackoff {
		st.RetryAt = time.Time{}
	}
	snapshot := *st
	s.mu.Unlock()
	if s.o.OnStatus != nil {
		s.o.OnStatus(snapshot)
	}
}

func (s *Supervisor) setState(state State, containerID string) {
	s.update(func(st *Status) {
		st.State = state
		if containerID != "" {
			st.ContainerID = containerID
		}
	})
}
