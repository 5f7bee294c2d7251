// Package pair is the image the two hosts of a deployment share, and the upgrades that move them to another one.
//
// The pair's image (repository, tag, digest), the highest release that ever ran against the node's database, and
// the upgrade under way, if any, live in one row of cl_agent_pair_image in that database, written by the agents of
// both hosts. A standby warms up on the recorded digest, a failover runs it, and only an upgrade — the operator's
// `cl-agent upgrade`, the auto policy, or a change of the pinned image.tag — changes it.
//
// An upgrade goes through these phases, each written by one host, each a compare-and-set on the one before:
//
//	requested  → validated  the standby (the active itself without leader election) pulled the candidate and the
//	                        node's own validate accepted the files the agent renders for it
//	requested  → refused    validation failed, or the candidate is older than the highest release (a downgrade)
//	validated  → switching  the active stops its node and steps down: the next start runs the candidate
//	switching  → starting   the candidate's node is being created (MigrationBaseline is recorded first)
//	starting   → done       the candidate's node became ready: it is now the pair's image
//	starting   → rolled_back the candidate's node was not ready within image.ready_timeout and had applied no
//	                        migration: the recorded image runs again
//	starting   → failed     not ready within the bound, but it had migrated the database: there is no way back,
//	                        the candidate stays the pair's image and the operator must look
//
// The point of no return is the candidate node's first database migration: the node runs its migrations when it
// starts, before it is ready. Until the highest version in goose_migrations moves, the old release still knows
// every table and can run again; after it moves, only the new release (or newer) can. The agent reads it with the
// candidate's node stopped, so the node cannot migrate between the reading and the roll-back.
package pair

import (
	"errors"
	"fmt"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/image"
)

// Phase is where an upgrade is; "" is none ever asked for.
type Phase string

// The phases of an upgrade (see the package comment).
const (
	Requested  Phase = "requested"
	Validated  Phase = "validated"
	Switching  Phase = "switching"
	Starting   Phase = "starting"
	Done       Phase = "done"
	Refused    Phase = "refused"
	RolledBack Phase = "rolled_back"
	Failed     Phase = "failed"
)

// InProgress reports whether an upgrade in phase p is still under way (another may not start).
func (p Phase) InProgress() bool {
	switch p {
	case Requested, Validated, Switching, Starting:
		return true
	}
	return false
}

// Record is the row: the pair's image, the highest release seen, and the last upgrade.
type Record struct {
	// Exists is false before the first host of a new pair recorded the image it runs.
	Exists     bool
	Image      image.Image
	Highest    string // the highest X.Y.Z release that ever ran against the database ("" none)
	RecordedBy string
	RecordedAt time.Time
	Upgrade    Upgrade
}

// Upgrade is the last upgrade asked for, and how far it got.
type Upgrade struct {
	Phase          Phase
	Candidate      image.Image
	AllowDowngrade bool   // the operator allowed this one upgrade to go to an older release
	Reason         string // why it was refused, rolled back or failed; what it waits for otherwise
	By             string // the instance that wrote the phase
	At             time.Time
	// MigrationBaseline is the database's highest migration before the candidate's node started (Starting).
	MigrationBaseline int64
}

// Ahead reports whether the pair has an upgrade under way whose next start runs the candidate.
func (r Record) Ahead() bool { return r.Upgrade.Phase == Switching || r.Upgrade.Phase == Starting }

// DowngradeError refuses an image older than the highest release that ran against the database: its migrations
// may have changed tables the older node does not know. Exit 5.
type DowngradeError struct {
	Image   string // the refused image's tag
	Highest string
}

func (e *DowngradeError) Error() string {
	return fmt.Sprintf("image %s is older than %s, the highest release that has run against this database: an older node "+
		"may not know the tables a newer one migrated; to downgrade anyway, run `cl-agent upgrade --to %s --allow-downgrade` "+
		"(or `cl-agent check --allow-downgrade` to check it)", e.Image, e.Highest, e.Image)
}

// ExitCode implements exitcode.Coder.
func (e *DowngradeError) ExitCode() int { return exitcode.Terminal }

// CheckDowngrade refuses img when its tag is a release older than highest. A tag that is no X.Y.Z release
// ("develop", "2.19.0-rc.1") cannot be ordered and is let through; so is anything when highest is "".
func CheckDowngrade(highest string, img image.Image) error {
	h, ok1 := release(highest)
	v, ok2 := release(img.Tag)
	if ok1 && ok2 && v.LessThan(h) {
		return &DowngradeError{Image: img.Tag, Highest: highest}
	}
	return nil
}

// Higher returns the higher of two releases; a tag that is no release does not count.
func Higher(a, b string) string {
	va, oka := release(a)
	vb, okb := release(b)
	switch {
	case !okb:
		if oka {
			return a
		}
		return ""
	case !oka || vb.GreaterThan(va):
		return b
	}
	return a
}

// Newer reports whether tag is a release higher than current's (a tag that is no release is never newer).
func Newer(tag, current string) bool {
	v, ok := release(tag)
	if !ok {
		return false
	}
	c, ok := release(current)
	return !ok || v.GreaterThan(c)
}

// release parses a stable X.Y.Z release tag.
func release(tag string) (*semver.Version, bool) {
	v, err := semver.StrictNewVersion(tag)
	if err != nil || v.Prerelease() != "" || v.Metadata() != "" {
		return nil, false
	}
	return v, true
}

// ErrInProgress refuses a second upgrade while one is under way.
var ErrInProgress = errors.New("an upgrade is already in progress")
