package config

import (
	"strings"
	"testing"
)

// TestDedicatedDirectoriesAccepted: a subdirectory of a system directory is the agent's to use.
func TestDedicatedDirectoriesAccepted(t *testing.T) {
	for _, extra := range []string{
		"container: {secrets_dir: /dev/shm/cl-agent}\n",
		"container: {data_dir: /home/ubuntu/chainlink}\n",
		"container: {data_dir: /var/lib/chainlink, secrets_dir: /run/chainlink}\n",
		"container: {data_dir: /librarian/node}\n" + "state_dir: /tmp/cl-agent\n",
		"control: {socket: /run/cl-agent.sock}\n",
		"control: {socket: /var/run/cl-agent/control.sock}\n",
		"state_dir: /root/cl-agent\n",
	} {
		if _, err := Parse([]byte(minimal + extra)); err != nil {
			t.Errorf("%q refused: %v", extra, err)
		}
	}
}

// TestSystemPathErrorSaysTheRule: the message names the field, the path and what to use instead.
func TestSystemPathErrorSaysTheRule(t *testing.T) {
	_, err := Parse([]byte(minimal + "container: {data_dir: /var/lib}\n"))
	for _, want := range []string{"container.data_dir (line 6)", "must not be a system path", "/var/lib/cl-agent", `"/var/lib"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	_, err = Parse([]byte(minimal + "state_dir: /run/cl-agent/node/state\n"))
	for _, want := range []string{"state_dir (line 6)", "inside container.secrets_dir (/run/cl-agent/node)", "lost at reboot"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
