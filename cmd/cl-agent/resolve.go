package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cl-agent/cl-agent/agent"
)

// runResolveImage prints the image the node would run: repository:tag@sha256:….
func runResolveImage(ctx context.Context, args []string, out, errOut io.Writer) error {
	f := newFlags("resolve-image", errOut)
	if err := f.parse(args); err != nil {
		return err
	}
	h, err := agent.Open(*f.configPath, errOut)
	if err != nil {
		return err
	}
	img, err := h.ResolveImage(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, img)
	return nil
}
