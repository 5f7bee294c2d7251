package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

func TestFence(t *testing.T) {
	t.Parallel()
	managed := map[string]string{LabelManaged: "true"}
	cases := []struct {
		name    string
		info    ContainerInfo
		inspect error
		want    error // errors.Is target; nil: success
		calls   []string
	}{
		{name: "NothingToFence", inspect: ErrNotFound},
		{name: "RunningManaged", info: ContainerInfo{ID: "abc", Running: true, Status: "running", Labels: managed},
			calls: []string{"stop abc 7s", "remove abc"}},
		{name: "ExitedManaged", info: ContainerInfo{ID: "abc", Status: "exited", Labels: managed},
			calls: []string{"remove abc"}},
		{name: "NotManagedIsNotOurs", info: ContainerInfo{ID: "abc", Running: true, Status: "running"}}, // left alone
		{name: "EngineDown", inspect: errors.New("connection refused"), want: errAny},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, nodefiles.PasswordFile), []byte("keystore-password-0123"), 0o400); err != nil {
				t.Fatal(err)
			}
			var calls []string
			e := &fakeEngine{t: t,
				InspectFn: func(_ context.Context, name string) (ContainerInfo, error) {
					if name != "chainlink" {
						t.Errorf("inspect %q", name)
					}
					return tc.info, tc.inspect
				},
				StopFn: func(_ context.Context, id string, timeout time.Duration) error {
					calls = append(calls, "stop "+id+" "+timeout.String())
					return nil
				},
				RemoveFn: func(_ context.Context, id string) error {
					calls = append(calls, "remove "+id)
					return nil
				},
			}
			err := Fence(context.Background(), e, "chainlink", dir, 7*time.Second)
			switch {
			case tc.want == nil && err != nil:
				t.Errorf("err = %v; want nil", err)
			case tc.want == errAny && err == nil:
				t.Errorf("err = nil; want the engine's error")
			case tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
				t.Errorf("err = %v; want %v", err, tc.want)
			}
			if !slices.Equal(calls, tc.calls) {
				t.Errorf("calls %v; want %v", calls, tc.calls)
			}
			if left := nodeFiles(t, dir); len(left) != 0 {
				t.Errorf("files left after fence: %v", left)
			}
		})
	}
}

var errAny = errors.New("any error")
