package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/cl-agent/cl-agent/agent"
	"github.com/cl-agent/cl-agent/agent/fsutil"
	"github.com/cl-agent/cl-agent/agent/logging"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

// renderValidator, when set, runs the node's own `validate` on the files render wrote (nodefiles.Validator);
// a refusal shreds them and exits 2. None is set in the shipped binary: the agent does not carry the node's image.
// Tests set it (a fake, or internal/realnode's run of the real image).
var renderValidator nodefiles.Validator

// runRender writes the node's files once, exactly as the daemon would (modes, owner, all or nothing), and exits.
// It replaces the old create-env / create-password / create-api scripts. Everything is fetched and checked
// before the first byte is written: the configuration (node.link_contract's EIP-55 case, extra_toml's rules) at
// load, the passwords against the node's rules that do not depend on its database. The keystore password's strength
// rule applies only to an empty keystore, which render does not look at (the daemon does, secrets.CheckKeystore).
func runRender(ctx context.Context, args []string, out, errOut io.Writer) error {
	f := newFlags("render", errOut)
	dir := f.String("out", "", "a new or empty directory to write the files into (made 0700, owned by container.user)")
	print := f.Bool("print", false, "also print the files, with secret values masked")
	if err := f.parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("render: --out DIR is required")
	}
	// render gives the directory to the node's uid with mode 0700 and shreds what it finds there: it must be new
	// or empty, never someone's directory (--out /tmp). Checked before anything is fetched, and again just before
	// the first write.
	if err := checkOutDir(*dir); err != nil {
		return err
	}
	h, err := agent.Open(*f.configPath, errOut)
	if err != nil {
		return err
	}
	if err := h.Learn(ctx); err != nil {
		return err
	}
	secrets, err := h.FetchSecrets(ctx)
	if err != nil {
		return err
	}
	img, err := h.ImageForFormat(ctx)
	if err != nil {
		return err
	}
	r, err := h.Render(img, secrets)
	if err != nil {
		return err
	}
	files := r.Files
	if *print {
		printMasked(out, files) // before nodefiles.Write wipes the bytes
	}
	if err := checkOutDir(*dir); err != nil {
		r.Wipe()
		return err
	}
	if err := nodefiles.Write(*dir, r, nodefiles.Owner(h.Config.Container)); err != nil {
		return err
	}
	if err := nodefiles.ValidateWithNode(ctx, renderValidator, nodefiles.WrittenFor(h.Config, r.Format, *dir)); err != nil {
		if serr := nodefiles.Shred(*dir); serr != nil {
			return errors.Join(err, fmt.Errorf("shred the refused files in %s: %w", *dir, serr))
		}
		return err
	}
	fmt.Fprintf(out, "rendered %s files into %s:\n", r.Format, *dir)
	for _, file := range files {
		fmt.Fprintf(out, "  %s (0400, %s)\n", filepath.Join(*dir, file.Name), h.Config.Container.User)
	}
	return nil
}

// printMasked prints the rendered files through the redactor, which masks every secret value.
func printMasked(out io.Writer, files []fsutil.File) {
	masked := logging.NewRedactor(out)
	for _, file := range files {
		fmt.Fprintf(masked, "--- %s\n%s", file.Name, file.Data)
		if !bytes.HasSuffix(file.Data, []byte("\n")) {
			fmt.Fprintln(masked)
		}
	}
}

// checkOutDir refuses an --out that exists and is not an empty directory (exit 2); nothing in it changes.
func checkOutDir(dir string) error {
	if err := fsutil.CheckNewOrEmptyDir(dir, "render writes only into a new or empty directory, which it gives to "+
		"container.user with mode 0700: name a new directory with --out"); err != nil {
		return fmt.Errorf("render --out: %w", err)
	}
	return nil
}
