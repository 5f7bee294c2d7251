package realnode

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// recordingEngine is the real engine, remembering the throwaways the validator creates and checking, once each
// runs, that nothing which selects the node by its managed label can see it.
type recordingEngine struct {
	*container.DockerEngine
	t       *testing.T
	started func(id string) // after a start, when set

	mu      sync.Mutex
	created []container.ContainerSpec
	ids     []string
}

func (e *recordingEngine) CreateContainer(ctx context.Context, spec container.ContainerSpec) (string, error) {
	id, err := e.DockerEngine.CreateContainer(ctx, spec)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.created = append(e.created, spec)
	if id != "" {
		e.ids = append(e.ids, id)
	}
	return id, err
}

func (e *recordingEngine) StartContainer(ctx context.Context, id string) error {
	err := e.DockerEngine.StartContainer(ctx, id)
	managed, lerr := e.ManagedContainers(ctx) // what FenceAll stops
	if lerr != nil {
		e.t.Errorf("list managed containers: %v", lerr)
	}
	if slices.Contains(managed, id) {
		e.t.Errorf("the throwaway %.12s is listed as a managed container: a fence would take it for the node", id)
	}
	if e.started != nil {
		e.started(id)
	}
	return err
}

// TestNodeValidatorOnTheRealNode runs the production validator (agent/container.NodeValidator, the node's own
// `validate` in a throwaway container on the real engine) on the files the agent renders: a harmless extra_toml is
// accepted; a key the node does not know is a RefusedError carrying the node's own reason, which names the key;
// a cancelled run is not a refusal. Every throwaway is gone afterwards, was never a managed container, and no
// secret value is in any error.
func TestNodeValidatorOnTheRealNode(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)
	docker, err := container.NewDockerEngine(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker.Close() })

	for _, tc := range []struct {
		name      string
		extraTOML string
		cancel    bool     // cancel the run once the throwaway runs
		secrets   string   // appended to the [Password] table of secrets.toml (the agent never writes such a file)
		wantOK    bool     // nil from the validator
		wantText  []string // in the error
	}{
		{name: "HarmlessExtraTOMLAccepted", extraTOML: "[Log]\nLevel = 'debug'\n", wantOK: true},
		{
			name:      "UnknownKeyRefusedWithTheNodesReason",
			extraTOML: "[Feature]\nNoSuchKey = true\n",
			wantText:  []string{nodefiles.ErrNodeRefused.Error(), "exited 1", "NoSuchKey = true", "missing field"},
		},
		{
			// The node quotes secrets.toml verbatim around a decoding error: the validator masks it.
			name:     "UnknownSecretsKeyRefusedWithoutTheSecrets",
			secrets:  "NoSuchSecret = 'x'\n",
			wantText: []string{nodefiles.ErrNodeRefused.Error(), "failed to decode secrets TOML", "NoSuchSecret", "missing field", "Keystore = *****"},
		},
		{name: "CancelledIsNotARefusal", extraTOML: "[Log]\nLevel = 'debug'\n", cancel: true, wantText: []string{"context canceled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			indented := "    " + strings.ReplaceAll(strings.TrimSuffix(tc.extraTOML, "\n"), "\n", "\n    ") + "\n"
			s := realnode.Render(t, pg, realnode.ExtraConfig("  extra_toml: |\n"+indented))
			if tc.secrets != "" {
				path := filepath.Join(s.Files.SecretsDir, nodefiles.SecretsFile)
				raw, err := os.ReadFile(path)
				if err != nil || !strings.HasPrefix(string(raw[strings.LastIndex(string(raw), "\n[")+1:]), "[Password]\n") {
					t.Fatalf("secrets.toml does not end in the [Password] table: %v", err)
				}
				if !strings.HasSuffix(string(raw), "\n") {
					raw = append(raw, '\n')
				}
				if err := os.WriteFile(path, append(raw, tc.secrets...), 0o400); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			e := &recordingEngine{DockerEngine: docker, t: t}
			if tc.cancel {
				e.started = func(string) { cancel() }
			}
			v := &container.NodeValidator{Engine: e, Image: image}

			start := time.Now()
			err := v.ValidateNode(ctx, nodefiles.WrittenFor(s.Config, nodefiles.FormatTOML, s.Files.SecretsDir))
			t.Logf("validate took %s: %v", time.Since(start).Round(time.Millisecond), err)

			var refused *nodefiles.RefusedError
			switch {
			case tc.wantOK && err != nil:
				t.Fatalf("validate refused the agent's files: %v", err)
			case !tc.wantOK && err == nil:
				t.Fatal("validate accepted them")
			case tc.cancel && errors.As(err, &refused):
				t.Errorf("a cancelled run is a refusal: %v", err)
			case !tc.wantOK && !tc.cancel && !errors.As(err, &refused):
				t.Errorf("err is %T, not a *nodefiles.RefusedError: %v", err, err)
			}
			for _, want := range tc.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error lacks %q: %v", want, err)
				}
			}
			if err != nil {
				for _, secret := range s.Secrets.Values() {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error holds a secret value")
					}
				}
			}

			if len(e.created) != 1 || len(e.ids) != 1 {
				t.Fatalf("created %d containers (%d ids); want one throwaway", len(e.created), len(e.ids))
			}
			if l := e.created[0].Config.Labels; l[container.LabelThrowaway] != container.ThrowawayValidate || l[container.LabelManaged] != "" {
				t.Errorf("throwaway labels %v", l)
			}
			if _, err := docker.InspectContainer(context.Background(), e.ids[0]); !errors.Is(err, container.ErrNotFound) {
				t.Errorf("the throwaway %.12s is still there: inspect = %v", e.ids[0], err)
			}
		})
	}
}
