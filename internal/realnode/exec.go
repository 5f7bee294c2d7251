package realnode

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Exec runs a command inside the node's running container as the node's user (docker exec -i), the way an
// operator runs the node's own CLI (`chainlink admin login`, `chainlink keys …`) on a host, with stdin as its
// standard input. It returns stdout and stderr together; a non-zero exit is an error carrying them. Bound:
// dockerTimeout.
func (n *Node) Exec(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", "-i", "--user", User, n.Name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("docker exec %s %s timed out after %s", n.Name, strings.Join(args, " "), dockerTimeout)
	}
	if err != nil {
		return string(out), fmt.Errorf("docker exec %s %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
