// Package system runs the shipped cl-agent binary and its systemd unit, unmodified, under a real systemd 252 as
// PID 1: each "host" is a container made from Debian packages (test/images/systemd) with its own dockerd and
// containerd, started with the caps REAL-WORLD.md lists. PostgreSQL, moto and the IMDS mock run on this machine and
// are reached through the docker bridge's gateway, as an EC2 host reaches RDS, AWS and 169.254.169.254; the node
// image is served by a registry on each host's loopback from this machine's registry storage.
//
// What it proves is what `systemd-analyze verify` and a fake notify socket cannot: that the unit's sandbox lets the
// agent run a node, that systemd restarts what it must (a hang, a panic, a kill) and not what it must not (exit 2
// and 5), that the node's data keeps its owner, that journald gets the log levels, and that a dockerd crash on the
// active never ends with two nodes running.
package system
