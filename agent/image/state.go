package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cl-agent/cl-agent/agent/fsutil"
)

// stateFile is the last good choice, under StateDir.
const stateFile = "image.json"

// savedImage is the JSON form of image.json.
type savedImage struct {
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Digest     string    `json:"digest"`
	ResolvedAt time.Time `json:"resolved_at"`
}

// saveImage writes img to dir/image.json (0600) with fsutil.WriteAtomic: a crash leaves the old file or the new
// one, never a torn one. An empty dir saves nothing.
func saveImage(dir string, img Image) error {
	if dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(savedImage{img.Repository, img.Tag, img.Digest, img.ResolvedAt.UTC()}, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, stateFile)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save image choice to %s: %w", path, err)
	}
	if err := fsutil.WriteAtomic(path, append(b, '\n'), 0o600, fsutil.NoOwner); err != nil {
		return fmt.Errorf("save image choice to %s: %w", path, err)
	}
	return nil
}

// loadImage reads dir/image.json; the result has FromCache set.
func loadImage(dir string) (Image, error) {
	if dir == "" {
		return Image{}, errors.New("no state directory configured")
	}
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, fmt.Errorf("none saved yet (%s)", path)
	}
	if err != nil {
		return Image{}, err
	}
	var s savedImage
	if err := json.Unmarshal(b, &s); err != nil {
		return Image{}, fmt.Errorf("%s: %w", path, err)
	}
	if s.Repository == "" || s.Tag == "" || s.ResolvedAt.IsZero() {
		return Image{}, fmt.Errorf("%s: incomplete (repository, tag and resolved_at are required)", path)
	}
	if err := checkDigest(s.Digest); err != nil {
		return Image{}, fmt.Errorf("%s: %w", path, err)
	}
	return Image{Repository: s.Repository, Tag: s.Tag, Digest: s.Digest, ResolvedAt: s.ResolvedAt, FromCache: true}, nil
}

// mismatch says why a saved choice cannot stand in for what o asks, or "" when it can: same repository, and
// the same pinned tag, or (unpinned) a stable release within o.Major.
func (i Image) mismatch(o Options) string {
	if i.Repository != o.Repository {
		return fmt.Sprintf("it is for repository %q", i.Repository)
	}
	if o.Tag != "" {
		if i.Tag != o.Tag {
			return fmt.Sprintf("image.tag is %q", o.Tag)
		}
		return ""
	}
	v, ok := releaseVersion(i.Tag)
	if !ok {
		return "it is not an X.Y.Z release and image.tag is empty"
	}
	if o.Major != 0 && v.Major() != o.Major {
		return fmt.Sprintf("image.major is %d", o.Major)
	}
	return ""
}
