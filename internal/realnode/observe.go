package realnode

import (
	"io"
	"strings"
	"testing"
)

// maxBody bounds what GetBody reads of an answer.
const maxBody = 4 << 20

// GetBody is Get that also returns the body (at most 4 MiB): one GET to the node's HTTP server, bound probeTimeout.
// The status is 0 when there was no answer.
func (n *Node) GetBody(path string) (int, []byte, error) {
	resp, err := n.client.Get(n.URL + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return resp.StatusCode, body, err
}

// ImageVersion is what `chainlink --version` of image prints (e.g. "chainlink version 2.19.0@d7b5f7b…"), in a
// throwaway container without network.
func ImageVersion(t testing.TB, image string) string {
	t.Helper()
	name := containerName("version")
	t.Cleanup(func() { removeContainer(name) })
	out, err := docker("run", "--rm", "--name", name, "--network", "none", "--user", User, image, "--version")
	if err != nil {
		t.Fatalf("realnode: %s --version: %v", image, err)
	}
	return out
}

// IPAddress is the container's address on the bridge network: where its database sessions come from
// (pg_stat_activity.client_addr), whatever they are named.
func (n *Node) IPAddress() string {
	n.t.Helper()
	out, err := docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", n.Name)
	if err != nil || strings.TrimSpace(out) == "" {
		n.t.Fatalf("realnode: the address of %s: %q %v", n.Name, out, err)
	}
	return strings.TrimSpace(out)
}
