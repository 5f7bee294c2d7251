// Package agent is the cl-agent daemon: the state machine that takes this host from standby to active and back
// (standby, starting, active, fencing, stopping), and Host, the start-up every command shares.
package agent
