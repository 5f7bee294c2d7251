package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/internal/standin"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestEngineInDocker: the adapter against the real engine. A missing container is ErrNotFound; a pull of a
// digest the registry does not have fails with the registry's error; Fence leaves a same-named container that
// cl-agent does not manage alone, removes a managed one, succeeds when there is nothing, and shreds the files
// every time.
func TestEngineInDocker(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	reg := testenv.RegistryT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	engine, err := NewDockerEngine(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	if err := engine.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	name := testPrefix + testenv.RandomHex(4)
	t.Cleanup(func() { removeContainer(name) })

	if _, err := engine.InspectContainer(ctx, name); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), name) {
		t.Errorf("inspect of a missing container = %v; want ErrNotFound naming it", err)
	}
	missing := reg.Addr + "/" + testPrefix + "none/chainlink@sha256:" + strings.Repeat("0", 64)
	err = EnsureImage(ctx, engine, missing, 10*time.Second, time.Minute, zaptest.NewLogger(t))
	if err == nil || !strings.Contains(err.Error(), "pull "+missing) || !strings.Contains(strings.ToLower(err.Error()), "unknown") {
		t.Errorf("pull of a digest the registry lacks = %v; want the registry's error", err)
	} else {
		t.Logf("pull of a missing digest: %v", err)
	}

	image := standin.Repository + ":" + testPrefix + testenv.RandomHex(4)
	if err := standin.BuildImage(ctx, image); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = dockerCmd("rmi", image) }) // untags: the sha- tag keeps the image for others
	secretsDir := t.TempDir()
	writeSecretFile := func() {
		t.Helper()
		if err := os.WriteFile(filepath.Join(secretsDir, nodefiles.APIFile), []byte("ops@example.com\n"+dockerAPIPassword+"\n"), 0o400); err != nil {
			t.Fatal(err)
		}
	}

	dockerT(t, ctx, "create", "--name", name, image)
	writeSecretFile()
	if err := Fence(ctx, engine, name, secretsDir, 2*time.Second); err != nil {
		t.Errorf("fence of an unmanaged container = %v; want nil: it is not this agent's node", err)
	}
	if _, err := engine.InspectContainer(ctx, name); err != nil {
		t.Errorf("the unmanaged container is gone: %v", err)
	}
	if left := nodeFiles(t, secretsDir); len(left) != 0 {
		t.Errorf("files left after a fence that left a foreign container alone: %v", left)
	}

	removeContainer(name)
	dockerT(t, ctx, "create", "--name", name, "--label", LabelManaged+"=true", image)
	writeSecretFile()
	if err := Fence(ctx, engine, name, secretsDir, 2*time.Second); err != nil {
		t.Errorf("fence of a managed container: %v", err)
	}
	if _, err := engine.InspectContainer(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Errorf("after fence: inspect = %v; want the container removed", err)
	}
	if left := nodeFiles(t, secretsDir); len(left) != 0 {
		t.Errorf("files left after fence: %v", left)
	}
	if err := Fence(ctx, engine, name, secretsDir, 2*time.Second); err != nil {
		t.Errorf("fence with nothing to fence: %v", err)
	}
}
