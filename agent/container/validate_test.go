package container

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

// fakeRunEngine is a fakeEngine that can also wait for a container and read its log.
type fakeRunEngine struct {
	*fakeEngine
	WaitFn func(ctx context.Context, id string, bound time.Duration) (int, error)
	LogsFn func(ctx context.Context, id string, tail int) (string, error)
}

var _ RunEngine = (*fakeRunEngine)(nil)

func (f *fakeRunEngine) WaitContainer(ctx context.Context, id string, bound time.Duration) (int, error) {
	if f.WaitFn == nil {
		f.missing("WaitContainer")
		return 0, fmt.Errorf("no WaitContainer")
	}
	return f.WaitFn(ctx, id, bound)
}

func (f *fakeRunEngine) ContainerLogs(ctx context.Context, id string, tail int) (string, error) {
	if f.LogsFn == nil {
		f.missing("ContainerLogs")
		return "", fmt.Errorf("no ContainerLogs")
	}
	return f.LogsFn(ctx, id, tail)
}

// validateRun is one run of the validator on a fake engine: what it created and whether it removed it.
type validateRun struct {
	spec    ContainerSpec
	removed []string
	err     error
}

func runValidator(t *testing.T, ctx context.Context, wait func(ctx context.Context) (int, error), logs string) validateRun {
	t.Helper()
	var run validateRun
	e := &fakeRunEngine{
		fakeEngine: &fakeEngine{t: t,
			CreateFn: func(_ context.Context, spec ContainerSpec) (string, error) { run.spec = spec; return "c0ffee", nil },
			StartFn:  func(context.Context, string) error { return nil },
			RemoveFn: func(ctx context.Context, id string) error {
				if ctx.Err() != nil {
					t.Errorf("remove called with an ended context: %v", ctx.Err())
				}
				run.removed = append(run.removed, id)
				return nil
			},
		},
		WaitFn: func(ctx context.Context, _ string, _ time.Duration) (int, error) { return wait(ctx) },
		LogsFn: func(context.Context, string, int) (string, error) { return logs, nil },
	}
	v := &NodeValidator{Engine: e, Image: "smartcontract/chainlink@sha256:" + strings.Repeat("a", 64), Timeout: time.Minute}
	files := nodefiles.Written{Format: nodefiles.FormatTOML, SecretsDir: "/run/cl-agent/node/x",
		ReadOnly: []string{"/etc/ssl/db-ca.pem"}, User: "14933:14933"}
	run.err = v.ValidateNode(ctx, files)
	return run
}

func exits(code int) func(context.Context) (int, error) {
	return func(context.Context) (int, error) { return code, nil }
}

// TestNodeValidator: the throwaway is the node's image running validate as the node's user with no network, the
// files mounted read-only, its RootDir a tmpfs of the node's uid; it is never labelled managed nor named like the
// node; it is removed after every run, also when ctx ends; exit 0 is nil, the node's exit 1 a RefusedError with the
// node's verdict, a kill or a ctx cut short never a refusal.
func TestNodeValidator(t *testing.T) {
	t.Parallel()
	const verdict = "Error running app: failed to decode config TOML: 3| NoSuchKey = true\n | ~~~~~~~~~ missing field"

	t.Run("AcceptedAndRemoved", func(t *testing.T) {
		run := runValidator(t, context.Background(), exits(0), "")
		if run.err != nil {
			t.Fatalf("exit 0: %v", run.err)
		}
		if !slices.Equal(run.removed, []string{"c0ffee"}) {
			t.Errorf("removed %v; want the throwaway", run.removed)
		}
		c, h := run.spec.Config, run.spec.HostConfig
		switch {
		case c.Labels[LabelManaged] != "" || c.Labels[LabelThrowaway] != ThrowawayValidate:
			t.Errorf("labels %v: want %s=%s and no %s", c.Labels, LabelThrowaway, ThrowawayValidate, LabelManaged)
		case !strings.HasPrefix(run.spec.Name, ValidatePrefix):
			t.Errorf("name %q", run.spec.Name)
		case !slices.Equal(c.Cmd, nodefiles.ValidateArgs()) || c.User != "14933:14933":
			t.Errorf("cmd %v as %q", c.Cmd, c.User)
		case h.NetworkMode != "none" || !h.ReadonlyRootfs || !slices.Equal(h.CapDrop, []string{"ALL"}):
			t.Errorf("network %q, read-only root %t, cap drop %v", h.NetworkMode, h.ReadonlyRootfs, h.CapDrop)
		case !strings.Contains(h.Tmpfs[nodefiles.DataMount], "uid=14933,gid=14933"):
			t.Errorf("tmpfs %v: want the node's RootDir owned by its uid", h.Tmpfs)
		case len(h.Mounts) != 2 || h.Mounts[0].Target != nodefiles.SecretsMount || !h.Mounts[0].ReadOnly ||
			h.Mounts[1].Source != h.Mounts[1].Target || !h.Mounts[1].ReadOnly:
			t.Errorf("mounts %+v", h.Mounts)
		}
	})

	t.Run("RefusedCarriesTheNodesReason", func(t *testing.T) {
		run := runValidator(t, context.Background(), exits(1), "RootDir = '/chainlink'\n"+verdict+"\n")
		var refused *nodefiles.RefusedError
		if !errors.As(run.err, &refused) || !strings.Contains(run.err.Error(), "NoSuchKey = true") ||
			!strings.Contains(run.err.Error(), "exited 1") || strings.Contains(run.err.Error(), "RootDir") {
			t.Errorf("err = %v; want a RefusedError with the verdict only", run.err)
		}
		if len(run.removed) != 1 {
			t.Errorf("removed %v", run.removed)
		}
	})

	t.Run("KilledIsNotARefusal", func(t *testing.T) {
		run := runValidator(t, context.Background(), exits(137), "")
		var refused *nodefiles.RefusedError
		if run.err == nil || errors.As(run.err, &refused) || !strings.Contains(run.err.Error(), "exited 137") {
			t.Errorf("err = %v; want a plain error naming exit 137", run.err)
		}
	})

	t.Run("CancelledStillRemoves", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		run := runValidator(t, ctx, func(ctx context.Context) (int, error) {
			cancel()
			<-ctx.Done()
			return 0, ctx.Err()
		}, "")
		var refused *nodefiles.RefusedError
		if !errors.Is(run.err, context.Canceled) || errors.As(run.err, &refused) {
			t.Errorf("err = %v; want context.Canceled, not a refusal", run.err)
		}
		if !slices.Equal(run.removed, []string{"c0ffee"}) {
			t.Errorf("removed %v; want the throwaway removed after a cancel", run.removed)
		}
	})

	t.Run("BadUserRefusedBeforeAnyCall", func(t *testing.T) {
		v := &NodeValidator{Engine: &fakeRunEngine{fakeEngine: &fakeEngine{t: t}}, Image: "x@sha256:" + strings.Repeat("a", 64)}
		err := v.ValidateNode(context.Background(), nodefiles.Written{SecretsDir: "/d", User: "chainlink"})
		if err == nil || !strings.Contains(err.Error(), "numeric uid:gid") {
			t.Errorf("err = %v", err)
		}
	})
}

// TestNodeReason: the reason starts at the node's last verdict, is cut to MaxReasonBytes on a rune boundary, and
// without a verdict is the output's tail.
func TestNodeReason(t *testing.T) {
	t.Parallel()
	config := strings.Repeat("Level = 'debug'\n", 400)
	for _, tc := range []struct {
		name, out, want string
	}{
		{"FromTheVerdict", config + "Invalid configuration: invalid secrets: Database.URL: invalid value (*****)\n",
			"Invalid configuration: invalid secrets: Database.URL: invalid value (*****)"},
		{"ErrorBeforeValidation", "Error running app: mkdir /chainlink: permission denied\n", "Error running app: mkdir /chainlink: permission denied"},
		{"NoVerdictTail", "a\nb\nlast words\n", "a\nb\nlast words"},
		{"ConfigContextMaskedButTheFault", "Error running app: failed to decode config TOML: 11| WSURL = 'wss://x/?key=k3y'\n12|\n13| [Feature]\n" +
			"14| NoSuchKey = true\n  | ~~~~~~~~~ missing field\n15| 'continued'",
			"Error running app: failed to decode config TOML: 11| WSURL = *****\n12|\n13| [Feature]\n" +
				"14| NoSuchKey = true\n  | ~~~~~~~~~ missing field\n15| *****"},
		{"SecretsContextAllMasked", "Error running app: failed to decode secrets TOML: 1| [Database]\n" +
			"2| URL = 'postgresql://u:p4ss@db/x'\n3| Bogus = 'p4ss'\n | ~~~~~ missing field\n4| [Password]\n5| Keystore = 'k3y'",
			"Error running app: failed to decode secrets TOML: 1| [Database]\n" +
				"2| URL = *****\n3| Bogus = *****\n | ~~~~~ missing field\n4| [Password]\n5| Keystore = *****"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NodeReason(tc.out); got != tc.want {
				t.Errorf("NodeReason = %q; want %q", got, tc.want)
			}
		})
	}
	long := NodeReason("Invalid configuration: " + strings.Repeat("é", MaxReasonBytes))
	if len(long) > MaxReasonBytes+len(" …") || !strings.HasSuffix(long, " …") || !strings.HasPrefix(long, "Invalid configuration") {
		t.Errorf("long reason: %d bytes, ends %q", len(long), long[len(long)-8:])
	}
	tail := NodeReason(strings.Repeat("x", 3*MaxReasonBytes) + "end")
	if len(tail) > MaxReasonBytes+len("… ") || !strings.HasSuffix(tail, "end") {
		t.Errorf("tail reason: %d bytes", len(tail))
	}
}
