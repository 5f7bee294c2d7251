package agent

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/pair"
)

// TestPairImageIsTheRecordedOne: once a pair has an image, a warm-up (and so a failover) runs it, whatever newer
// release the registry has, and a pinned image.tag that differs is left to the upgrade the active asks for —
// unless it is older than the highest release, which is refused with exit 5 naming both versions.
func TestPairImageIsTheRecordedOne(t *testing.T) {
	recorded := image.Image{Repository: "smartcontract/chainlink", Tag: "2.19.0", Digest: "sha256:" + strings.Repeat("1", 64)}
	rec := pair.Record{Exists: true, Image: recorded, Highest: "2.20.0"}
	for _, tc := range []struct {
		name, pinned, repository string
		wantErr                  string
	}{
		{name: "unpinned: the pair's image, not the newest release"},
		{name: "pinned to the pair's tag", pinned: "2.19.0"},
		{name: "pinned newer: the active upgrades", pinned: "2.21.0"},
		{name: "pinned older than the highest", pinned: "2.18.0", wantErr: "image 2.18.0 is older than 2.20.0"},
		{name: "a mirror: the recorded digest from image.repository", repository: "123456789012.dkr.ecr.us-east-1.amazonaws.com/chainlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Image.Tag = tc.pinned
			want := recorded
			if tc.repository != "" {
				cfg.Image.Repository, want.Repository = tc.repository, tc.repository
			}
			cfg.Image.HubURL = "http://127.0.0.1:1" // nothing may be resolved: the record decides
			h := &Host{Config: &cfg, Log: zap.NewNop()}
			img, err := h.PairImage(context.Background(), rec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || exitcode.Of(err) != exitcode.Terminal {
					t.Fatalf("got %v (exit %d), want %q with exit 5", err, exitcode.Of(err), tc.wantErr)
				}
				return
			}
			if err != nil || img != want {
				t.Fatalf("got %s, %v; want %s", img, err, want)
			}
		})
	}
}
