package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cl-agent/cl-agent/agent/config"
)

// command is one subcommand: its name, one line of help, and what it does with its arguments.
type command struct {
	name, args, help string
	run              func(ctx context.Context, args []string, out, errOut io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "[--config FILE]", "run the daemon (systemd starts it)", runDaemon},
		{"render", "--out DIR [--config FILE] [--print]", "write the node's files once, as the daemon would, and exit", runRender},
		{"resolve-image", "[--config FILE]", "print the image the node would run, as repository:tag@sha256:…", runResolveImage},
		{"check", "[--allow-downgrade] [--config FILE]", "run every preflight check, one line each", runCheck},
		{"fence", "[--config FILE]", "stop and remove this host's node and shred its files (no daemon needed)", runFence},
		{"status", "[--json] [--config FILE]", "show the daemon's role, lock and node", runStatus},
		{"restart", "[--config FILE]", "re-fetch secrets and recreate the node (active host only)", runRestart},
		{"stepdown", "[--wait] [--config FILE]", "hand the node over to the other host", runStepdown},
		{"upgrade", "[--to TAG] [--allow-downgrade] [--wait] [--timeout DURATION] [--config FILE]",
			"move the pair to a newer image with one switchover (any host)", runUpgrade},
		{"version", "", "print the version", runVersion},
	}
}

func run(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printHelp(out)
		if len(args) == 0 {
			return usagef("a command is required")
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], out, errOut)
		}
	}
	printHelp(errOut)
	return usagef("unknown command %q", args[0])
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "cl-agent %s: runs a highly available Chainlink node on an EC2 host.\n\nUsage: cl-agent COMMAND [options]\n\nCommands:\n", version)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n  %-14s   %s\n", c.name, c.help, "", strings.TrimSpace(c.name+" "+c.args))
	}
	fmt.Fprintf(w, "\nThe configuration is read from --config, else $CL_AGENT_CONFIG, else %s.\n", config.DefaultPath)
	fmt.Fprintf(w, "Exit codes: 0 success, 1 failure worth retrying, 2 bad usage or configuration, 5 terminal failure.\n")
}

// flags is a FlagSet that returns usage errors instead of exiting, with the common --config flag.
type flags struct {
	*flag.FlagSet
	configPath *string
}

func newFlags(name string, errOut io.Writer) flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	def := config.DefaultPath
	if env := os.Getenv("CL_AGENT_CONFIG"); env != "" {
		def = env
	}
	return flags{FlagSet: fs, configPath: fs.String("config", def, "configuration file")}
}

func (f flags) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		return usagef("%s: %v", f.Name(), err)
	}
	if f.NArg() > 0 {
		return usagef("%s: unexpected argument %q", f.Name(), f.Arg(0))
	}
	return nil
}

func runVersion(_ context.Context, args []string, out, errOut io.Writer) error {
	if err := newFlags("version", errOut).parse(args); err != nil {
		return err
	}
	fmt.Fprintf(out, "cl-agent %s\n", version)
	return nil
}
