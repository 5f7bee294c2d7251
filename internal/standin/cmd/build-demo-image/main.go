// Command build-demo-image builds the stand-in node image, tags it REPOSITORY:TAG for each TAG and pushes them:
// `make demo` uses it to fill the local registry the way Docker Hub holds real releases.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/cl-agent/cl-agent/internal/standin"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: build-demo-image REPOSITORY TAG...")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	repo := os.Args[1]
	var refs []string
	for _, tag := range os.Args[2:] {
		refs = append(refs, repo+":"+tag)
	}
	if err := standin.BuildImage(ctx, refs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, ref := range refs {
		if out, err := exec.CommandContext(ctx, "docker", "push", ref).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "docker push %s: %v\n%s", ref, err, out)
			os.Exit(1)
		}
		fmt.Println("pushed", ref)
	}
}
