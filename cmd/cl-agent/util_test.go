package main

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/standin"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// pushStandin builds the stand-in node image, pushes it to a fresh loopback registry under the tags, and returns
// the repository (registry/chainlink/chainlink).
func pushStandin(t *testing.T, tags ...string) string {
	t.Helper()
	testenv.DockerT(t)
	reg := testenv.RegistryT(t)
	repo := reg.Addr + "/chainlink/chainlink"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var refs []string
	for _, tag := range tags {
		refs = append(refs, repo+":"+tag)
	}
	if err := standin.BuildImage(ctx, refs...); err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		if out, err := exec.CommandContext(ctx, "docker", "push", ref).CombinedOutput(); err != nil {
			t.Fatalf("docker push %s: %v\n%s", ref, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("docker", "rmi", ref).Run() })
	}
	return repo
}

func TestReachableFromOtherHosts(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:9180": false, "[::1]:9180": false, "localhost:9180": false, "127.0.0.2:9180": false,
		"0.0.0.0:9180": true, ":9180": true, "[::]:9180": true, "10.0.1.10:9180": true, "node.example:9180": true,
	} {
		if got := reachableFromOtherHosts(listen); got != want {
			t.Errorf("reachableFromOtherHosts(%q) = %v, want %v", listen, got, want)
		}
	}
}
