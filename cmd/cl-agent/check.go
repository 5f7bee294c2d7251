package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cl-agent/cl-agent/agent"
	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/fsutil"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/secrets"
)

// checkTimeout bounds the checks that have no configured bound of their own (Docker, the database).
const checkTimeout = 10 * time.Second

// checkFailed carries the worst exit code of the failed checks; the lines are already printed.
type checkFailed struct{ code int }

func (e *checkFailed) Error() string { return "check failed" }
func (e *checkFailed) ExitCode() int { return e.code }
func (e *checkFailed) Unwrap() error { return errReported }

// runCheck runs every preflight check and prints one line per check: ok, FAIL (with the reason) or skip (when a
// check it needs failed). --allow-downgrade passes the pair-image line for an image older than the highest release
// that ran against the database, for this run only. The exit code is the worst of the failures: the largest, so Terminal (5) over Config (2)
// over Retry (1).
func runCheck(ctx context.Context, args []string, out, errOut io.Writer) error {
	f := newFlags("check", errOut)
	allowDowngrade := f.Bool("allow-downgrade", false, "pass the pair-image line for an image older than the highest release that ran")
	if err := f.parse(args); err != nil {
		return err
	}
	r := &checkReport{out: out}
	line, skip, skipWhy, done := r.line, r.skip, r.skipWhy, r.done

	h, err := agent.Open(*f.configPath, errOut)
	if !line("config", err, *f.configPath) {
		skip("imds", "secrets", "database", "docker", "image", "chain-http", "chain-ws", pairImageLine, nodeValidateLine)
		return done()
	}
	note(out, "tmpfs", secretsDirNote(h.Config.Container.SecretsDir))
	note(out, "p2p", checkNote{warn: true, text: h.Config.Node.P2PIdleWarning()})
	dockerOK := line("docker", checkDocker(ctx), "engine answers")
	img, err := h.ResolveImage(ctx)
	imageOK := line("image", err, img.String())
	if imageOK || h.Config.Node.Format != "auto" {
		if format, err := nodefiles.FormatFor(h.Config.Node.Format, img.Tag); err == nil {
			note(out, "format", formatNote(format, h.Config.Container.Name))
		}
	}
	checkChain(ctx, h.Config, line, out)

	if err := h.Learn(ctx); !line("imds", err, fmt.Sprintf("%s %s %s %s", h.Identity.InstanceID, h.Identity.Region, h.Identity.AZ, h.Identity.PrivateIP)) {
		skip("secrets", "database", pairImageLine, nodeValidateLine)
		return done()
	}
	nodeSecrets, err := h.FetchSecrets(ctx)
	if !line("secrets", err, "database_password, api_password and keystore_password fetched and meet the node's rules") {
		skip("database", pairImageLine, nodeValidateLine)
		return done()
	}
	version, err := checkDatabase(ctx, h.Config, nodeSecrets.DatabasePassword)
	if line("database", err, version) {
		r.pairImage(ctx, h.Config, nodeSecrets.DatabasePassword, img, imageOK, *allowDowngrade)
	} else {
		skip(pairImageLine)
	}

	if !dockerOK || !imageOK {
		skip(nodeValidateLine)
		return done()
	}
	detail, why, err := nodeValidate(ctx, h, img, nodeSecrets)
	if why != "" {
		skipWhy(nodeValidateLine, why)
		return done()
	}
	line(nodeValidateLine, err, detail)
	return done()
}

// checkReport prints check's lines, one per check, and keeps the worst exit code of the failed ones.
type checkReport struct {
	out   io.Writer
	worst int
}

// line prints the check's outcome: ok with detail, or FAIL with err; it reports whether the check passed.
func (r *checkReport) line(name string, err error, detail string) bool {
	if err != nil {
		fmt.Fprintf(r.out, "FAIL  %-9s %v\n", name, err)
		r.worst = max(r.worst, exitCode(err))
		return false
	}
	fmt.Fprintf(r.out, "ok    %-9s %s\n", name, detail)
	return true
}

// skipWhy prints a check that did not run, and why.
func (r *checkReport) skipWhy(name, why string) { fmt.Fprintf(r.out, "skip  %-9s %s\n", name, why) }

// skip prints checks that need a failed one above them.
func (r *checkReport) skip(names ...string) {
	for _, n := range names {
		r.skipWhy(n, "needs the checks above")
	}
}

// done is check's outcome: nil, or the worst failure's exit code.
func (r *checkReport) done() error {
	if r.worst == exitcode.OK {
		return nil
	}
	return &checkFailed{code: r.worst}
}

// nodeValidateLine names the check that runs the node's own validate on the files the agent renders.
const nodeValidateLine = "node-validate"

// checkValidator makes the node-validate line's validator: the node's own validate in a throwaway container of the
// image. cmd's tests replace it, since their stand-in image has no validate (the real node's is tested in
// test/realnode).
var checkValidator = func(e container.RunEngine, image string) nodefiles.Validator {
	return &container.NodeValidator{Engine: e, Image: image}
}

// nodeValidate is the node-validate line for img on this host's engine.
func nodeValidate(ctx context.Context, h *agent.Host, img image.Image, s secrets.NodeSecrets) (detail, why string, err error) {
	format, err := nodefiles.FormatFor(h.Config.Node.Format, img.Tag)
	if err != nil {
		return "", "", err
	}
	engine, err := container.NewDockerEngine(checkTimeout)
	if err != nil {
		return "", "", err
	}
	defer engine.Close()
	return agent.ValidateFiles(ctx, h.Config, format, img.Ref(), engine, checkValidator(engine, img.Ref()),
		func() (*nodefiles.Rendered, error) { return h.Render(img, s) })
}

// note prints a line that informs or warns without failing the check: "note" or "WARN" with the text.
func note(out io.Writer, name string, n checkNote) {
	if n.text == "" {
		return
	}
	tag := "note"
	if n.warn {
		tag = "WARN"
	}
	fmt.Fprintf(out, "%-5s %-9s %s\n", tag, name, n.text)
}

type checkNote struct {
	warn bool
	text string
}

// secretsDirNote says whether container.secrets_dir is on tmpfs, where shredding the node's files destroys them.
// A directory that does not exist yet (systemd's RuntimeDirectory= makes it when the unit starts) is judged by the
// nearest directory above it that does.
func secretsDirNote(dir string) checkNote {
	at := dir
	for {
		if _, err := os.Stat(at); err == nil || filepath.Dir(at) == at {
			break
		}
		at = filepath.Dir(at)
	}
	where := dir
	if at != dir {
		where = fmt.Sprintf("%s (not created yet; judged by %s)", dir, at)
	}
	onTmpfs, err := fsutil.IsTmpfs(at)
	switch {
	case err != nil:
		return checkNote{warn: true, text: fmt.Sprintf("cannot tell whether container.secrets_dir %s is on tmpfs: %v", where, err)}
	case !onTmpfs:
		return checkNote{warn: true, text: fmt.Sprintf("container.secrets_dir %s is not on tmpfs: the node's secrets reach a disk "+
			"while it starts, and shredding a disk file is only best effort; mount a tmpfs there (the unit's "+
			"RuntimeDirectory= under /run is one)", where)}
	}
	return checkNote{text: fmt.Sprintf("container.secrets_dir %s is on tmpfs", where)}
}

// formatNote warns about what the 1.x format cannot avoid: the node reads its settings only from its environment,
// so the database URL, password included, is part of the container's configuration.
func formatNote(format nodefiles.Format, container string) checkNote {
	if format != nodefiles.FormatEnv {
		return checkNote{}
	}
	return checkNote{text: fmt.Sprintf("1.x .env format: the node reads its settings only from its environment, so "+
		"DATABASE_URL, with the database password, shows in `docker inspect %s` to anyone who can use the Docker "+
		"socket; a 2.x image with node.format toml (or auto) keeps it in secrets.toml on the tmpfs, shredded once "+
		"the node is up", container)}
}

func checkDocker(ctx context.Context) error {
	engine, err := container.NewDockerEngine(checkTimeout)
	if err != nil {
		return err
	}
	defer engine.Close()
	return engine.Ping(ctx) // bounded by checkTimeout; the error names the bound
}

// checkDatabase connects as the node will (same URL, TLS settings and password) and reports the server version.
func checkDatabase(ctx context.Context, c *config.Config, password secrets.Secret) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	conn, err := connectDatabase(ctx, c, password)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "", fmt.Errorf("query the database: %w", err)
	}
	return "PostgreSQL " + v + " reachable with the node's credentials", nil
}
