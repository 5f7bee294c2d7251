package main

import (
	"context"
	"fmt"
	"io"
)

func notYet(name string) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(context.Context, []string, io.Writer, io.Writer) error {
		return fmt.Errorf("%s: %w in this build", name, errNotYet)
	}
}

var (
	runDaemon = notYet("run")
	runFence  = notYet("fence")
)
