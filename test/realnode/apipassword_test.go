package realnode

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/health"
	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestAPIPasswordRotatesThroughTheNode: the node ignores a new .api once its user exists, so a rotated API password
// must go through PATCH /v2/user/password. After the change the new password logs in and the old one does not; a
// second run finds the change done; a password the node never had is refused without a change.
func TestAPIPasswordRotatesThroughTheNode(t *testing.T) {
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)
	// The node allows 5 logins per 20 s from one client by default; this test logs in more often than that.
	s := realnode.Render(t, pg, realnode.ExtraConfig("  extra_toml: |\n    [WebServer.RateLimit]\n    Unauthenticated = 1000\n"))
	node := realnode.Start(t, image, s.Files, s.Cmd)
	node.WaitReady(readyBound)

	email, held := s.Config.Node.APIEmail, s.Secrets.APIPassword.Reveal()
	const rotated = "Rotated-API-p@ssw0rd-2026"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := health.ChangeAPIPassword(ctx, node.URL, email, held, rotated); err != nil {
		t.Fatal(err)
	}
	canLogin := func(password string) error {
		_, err := login(ctx, node.URL, email, password)
		return err
	}
	if err := canLogin(rotated); err != nil {
		t.Errorf("the rotated password does not log in after the change: %v", err)
	}
	if err := canLogin(held); err == nil {
		t.Error("the old password still logs in after the change")
	}
	if err := health.ChangeAPIPassword(ctx, node.URL, email, held, rotated); err != nil {
		t.Errorf("a second run after the change: %v; want done", err)
	}
	err := health.ChangeAPIPassword(ctx, node.URL, email, "Never-the-node's-p@ss-1", "Another-new-p@ss-2026")
	if !errors.Is(err, health.ErrAPIPasswordRefused) {
		t.Errorf("unknown held password: %v; want ErrAPIPasswordRefused", err)
	}
	if err := canLogin(rotated); err != nil {
		t.Errorf("a refused change changed the password: %v", err)
	}
}
