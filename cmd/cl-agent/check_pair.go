package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/secrets"
)

// pairImageLine names the check that the image this host's configuration chooses is no downgrade of the pair's
// (README, "Upgrades").
const pairImageLine = "pair-image"

// pairImage is the pair-image line: it reads the pair's record from the database, as the daemon does at start, and
// refuses the configured image when it is older than the highest release that ran there (exit 5), unless
// allowDowngrade (`check --allow-downgrade`). img is the image the image line resolved; known is false when that
// failed, and then only a pinned image.tag can be judged.
func (r *checkReport) pairImage(ctx context.Context, c *config.Config, password secrets.Secret, img image.Image, known, allowDowngrade bool) {
	if !known {
		if c.Image.Tag == "" {
			r.skipWhy(pairImageLine, "needs the image check (the newest release within image.major)")
			return
		}
		img = image.Image{Repository: c.Image.Repository, Tag: c.Image.Tag}
	}
	rec, err := readPairRecord(ctx, c, password)
	if err != nil {
		r.line(pairImageLine, err, "")
		return
	}
	detail, err := pairImageVerdict(rec, img, allowDowngrade)
	r.line(pairImageLine, err, detail)
}

// pairImageVerdict is the pair-image line's outcome for the image img this host's configuration chooses, against
// the pair's record rec. The image the pair already runs is never a downgrade, even below the highest release (a
// downgrade done on purpose with `cl-agent upgrade --allow-downgrade`), as the daemon's start judges it.
func pairImageVerdict(rec pair.Record, img image.Image, allowDowngrade bool) (string, error) {
	if !rec.Exists {
		return fmt.Sprintf("not a downgrade: no image recorded yet (a new pair); %s would be its first", img.Tag), nil
	}
	highest := rec.Highest
	if highest == "" {
		highest = "none (no X.Y.Z release has run)"
	}
	pairIs := fmt.Sprintf("the pair runs %s, highest release %s", rec.Image, highest)
	runs := "the pair runs " + rec.Image.String()
	if img.Tag == rec.Image.Tag {
		return "not a downgrade: " + pairIs, nil
	}
	err := pair.CheckDowngrade(rec.Highest, img)
	switch {
	case err == nil:
		return fmt.Sprintf("not a downgrade: %s; %s", img.Tag, pairIs), nil
	case allowDowngrade:
		return fmt.Sprintf("downgrade allowed for this run (--allow-downgrade): %s is older than %s; %s; the pair moves "+
			"to it only with `cl-agent upgrade --to %s --allow-downgrade`", img.Tag, rec.Highest, pairIs, img.Tag), nil
	}
	return "", fmt.Errorf("%w (%s)", err, runs)
}

// readPairRecord reads the pair's record over a connection made as the node's (and the daemon's) is: same URL, TLS
// settings and password.
func readPairRecord(ctx context.Context, c *config.Config, password secrets.Secret) (pair.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	conn, err := connectDatabase(ctx, c, password)
	if err != nil {
		return pair.Record{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rec, err := pair.Read(ctx, conn)
	if err != nil {
		return pair.Record{}, fmt.Errorf("%w (bound %s)", err, checkTimeout)
	}
	return rec, nil
}

// connectDatabase connects to the node's database with its credentials, within ctx.
func connectDatabase(ctx context.Context, c *config.Config, password secrets.Secret) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, nodefiles.DatabaseURL(c.Node.Database, password.Reveal(), ""))
	if err != nil {
		// pgx masks the password in its errors; the redactor would catch it anyway.
		return nil, fmt.Errorf("connect to %s:%d/%s as %s (bound %s): %w", c.Node.Database.Host, c.Node.Database.Port,
			c.Node.Database.Name, c.Node.Database.User, checkTimeout, err)
	}
	return conn, nil
}
