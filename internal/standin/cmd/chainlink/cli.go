package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// generation is the node's configuration generation: 1.x reads environment variables, 2.x reads TOML files.
type generation int

const (
	gen1 generation = 1
	gen2 generation = 2
)

// invocation is what the command line asked for.
type invocation struct {
	version      bool
	validate     bool // 2.x `node … validate`: check the configuration and secrets, run nothing
	gen          generation
	configFiles  []string // 2.x: -config, repeatable, merged in order
	secretsFiles []string // 2.x: -secrets, repeatable, merged in order
	passwordFile string   // -p: keystore password
	apiFile      string   // -a: API e-mail and password
}

// errUsage marks a command line the program does not understand (exit code 2).
var errUsage = errors.New("bad usage")

const usage = `usage:
  chainlink --version | -v
  chainlink local n -p PASSWORD_FILE -a API_FILE                        (1.x: config from the environment)
  chainlink node -config CONFIG.toml -secrets SECRETS.toml start -p PASSWORD_FILE -a API_FILE   (2.x)
  chainlink node -config CONFIG.toml -secrets SECRETS.toml validate                            (2.x)
`

// parseArgs reads the 1.x and 2.x command lines the real node accepts (the subset the agent uses).
func parseArgs(args []string) (invocation, error) {
	if len(args) == 0 {
		return invocation{}, fmt.Errorf("%w: no command", errUsage)
	}
	switch args[0] {
	case "-v", "--version", "-version", "version":
		if len(args) != 1 {
			return invocation{}, fmt.Errorf("%w: %s takes no arguments", errUsage, args[0])
		}
		return invocation{version: true}, nil
	case "local":
		return parseLocal(args[1:])
	case "node":
		return parseNode(args[1:])
	}
	return invocation{}, fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// parseLocal reads 1.x `local n|node -p FILE -a FILE`.
func parseLocal(args []string) (invocation, error) {
	if len(args) == 0 || (args[0] != "n" && args[0] != "node") {
		return invocation{}, fmt.Errorf("%w: want `local n`", errUsage)
	}
	inv := invocation{gen: gen1}
	if err := parseStartFlags("local n", args[1:], &inv); err != nil {
		return invocation{}, err
	}
	return inv, nil
}

// parseNode reads 2.x `node -config FILE -secrets FILE start -p FILE -a FILE`.
func parseNode(args []string) (invocation, error) {
	inv := invocation{gen: gen2}
	fs := newFlagSet("node")
	fs.Var((*listFlag)(&inv.configFiles), "config", "TOML configuration file (repeatable)")
	fs.Var((*listFlag)(&inv.configFiles), "c", "alias of -config")
	fs.Var((*listFlag)(&inv.secretsFiles), "secrets", "TOML secrets file (repeatable)")
	fs.Var((*listFlag)(&inv.secretsFiles), "s", "alias of -secrets")
	if err := fs.Parse(args); err != nil {
		return invocation{}, fmt.Errorf("%w: node: %v", errUsage, err)
	}
	rest := fs.Args()
	if len(rest) == 1 && rest[0] == "validate" {
		inv.validate = true
		return inv, nil
	}
	if len(rest) == 0 || rest[0] != "start" {
		return invocation{}, fmt.Errorf("%w: want `node [flags] start` or `node [flags] validate`", errUsage)
	}
	if err := parseStartFlags("node start", rest[1:], &inv); err != nil {
		return invocation{}, err
	}
	return inv, nil
}

func parseStartFlags(name string, args []string, inv *invocation) error {
	fs := newFlagSet(name)
	fs.StringVar(&inv.passwordFile, "p", "", "keystore password file")
	fs.StringVar(&inv.passwordFile, "password", "", "alias of -p")
	fs.StringVar(&inv.apiFile, "a", "", "API credentials file")
	fs.StringVar(&inv.apiFile, "api", "", "alias of -a")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %s: %v", errUsage, name, err)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: %s: unexpected argument %q", errUsage, name, fs.Arg(0))
	}
	return nil
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the caller prints one usage text
	return fs
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}
