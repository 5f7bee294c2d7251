package container

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// TestEngineDeadlines: against an engine that never answers, every call gives up after its bound with an
// error that names the operation and the bound.
func TestEngineDeadlines(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	const bound = 100 * time.Millisecond
	e, err := newDockerEngine(bound, client.WithHost("tcp://"+srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	spec, err := Spec(unitConfig(t), testIdentity, testImage, tomlRendered())
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"ping docker engine timed out after 100ms":                    func() error { return e.Ping(ctx) },
		`inspect container "chainlink" timed out after 100ms`:         func() error { _, err := e.InspectContainer(ctx, "chainlink"); return err },
		`create container "chainlink" timed out after 100ms`:          func() error { _, err := e.CreateContainer(ctx, spec); return err },
		"start container 0123456789ab timed out after 100ms":          func() error { return e.StartContainer(ctx, "0123456789abcdef") },
		"stop container 0123456789ab timed out after 1.1s":            func() error { return e.StopContainer(ctx, "0123456789abcdef", time.Second) },
		"remove container 0123456789ab timed out after 100ms":         func() error { return e.RemoveContainer(ctx, "0123456789abcdef") },
		"inspect image " + testImage.Ref() + " timed out after 100ms": func() error { _, err := e.ImagePresent(ctx, testImage.Ref()); return err },
		"pull " + testImage.Ref() + ": the engine did not answer within 100ms": func() error {
			rc, err := e.PullImage(ctx, testImage.Ref())
			if err == nil {
				rc.Close()
			}
			return err
		},
		`subscribe to events of container "chainlink" timed out after 100ms`: func() error {
			_, errc := e.ContainerEvents(ctx, "chainlink")
			return <-errc
		},
	}
	for want, call := range calls {
		start := time.Now()
		err := call()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v; want %q", err, want)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%q took %s", want, took)
		}
	}
}
