package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestNodeInDocker runs the stand-in node as production does: the image resolved from a real registry and
// pulled by digest, a 2.x configuration with a database password that needs percent-encoding and a verified
// TLS connection, the awslogs driver shipping to moto. It checks the container as Docker reports it, that no
// secret appears in `docker inspect` or the agent's log, that the files exist only while the node starts,
// that the node's log lines reach CloudWatch Logs, that a killed node comes back with fresh files, and that
// cancelling Run stops and removes the node.
func TestNodeInDocker(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	moto := testenv.MotoT(t)
	awsCredentialsT(t)
	imds := testenv.IMDST(t, testenv.Identity{InstanceID: "i-" + testenv.RandomHex(8) + "1", Region: "us-east-1", AZ: "us-east-1b", PrivateIP: "10.0.1.20"})
	id, _, err := identity.Resolve(ctx, identity.NewIMDSClient(imds.URL), config.Instance{}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e := newNodeEnv(t, ctx, envOptions{moto: moto, id: id})

	o := e.options()
	var files fileWatch
	s, err := NewSupervisor(o)
	if err != nil {
		t.Fatal(err)
	}
	s.onFiles = files.record
	stopSampler := files.sample(t, s, e.cfg.Container.SecretsDir)
	stop := runSupervisor(t, s)
	first := waitNodeReady(t, s, 90*time.Second, "")
	if first.Digest != e.img.Digest || first.Image != e.img.String() || first.Restarts != 0 {
		t.Errorf("status %+v; want %s, no restarts", first, e.img)
	}
	if left := nodeFiles(t, e.cfg.Container.SecretsDir); len(left) != 0 {
		t.Errorf("files in secrets_dir after the node got ready: %v", left)
	}
	if code := httpStatus(fmt.Sprintf("http://127.0.0.1:%d/readyz", e.cfg.Container.HostPort)); code != http.StatusOK {
		t.Errorf("/readyz on host_port = %d", code)
	}

	raw := checkInspect(t, ctx, e, first.ContainerID)
	for _, secret := range e.secretValues() {
		for _, form := range []string{secret, jsonEscaped(secret), escapeUserinfo(secret)} {
			if strings.Contains(raw, form) {
				t.Errorf("docker inspect shows a secret value")
			}
		}
	}
	checkLeaseHost(t, ctx, e)
	checkCloudWatch(t, ctx, moto, e.cfg.Container.Log.Group, e.id.InstanceID)

	// Killing the node (as the OOM killer would) brings it back, with files written for the new start only.
	if _, err := dockerCmd("kill", first.ContainerID); err != nil {
		t.Fatal(err)
	}
	second := waitNodeReady(t, s, 90*time.Second, first.ContainerID)
	if second.Restarts != 1 {
		t.Errorf("restarts = %d; want 1", second.Restarts)
	}
	if left := nodeFiles(t, e.cfg.Container.SecretsDir); len(left) != 0 {
		t.Errorf("files in secrets_dir after the restart: %v", left)
	}
	if writes := files.lifetimes(); len(writes) != 2 {
		t.Errorf("the files were written %d times; want once per start", len(writes))
	} else {
		t.Logf("files lifetime per start: %v", writes)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v; want nil", err)
	}
	stopSampler()
	if files.seenWhileReady() != "" {
		t.Errorf("files were present while the node was ready: %s", files.seenWhileReady())
	}
	if files.seenCount() == 0 {
		t.Error("the sampler never saw the files: it proves nothing")
	}
	if _, err := e.engine.InspectContainer(ctx, e.cfg.Container.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Run: inspect = %v; want the container removed", err)
	}
	logs := e.logs.String()
	for _, secret := range e.secretValues() {
		if strings.Contains(logs, secret) || strings.Contains(logs, escapeUserinfo(secret)) {
			t.Errorf("the agent's log shows a secret value")
		}
	}
	if !strings.Contains(logs, "node ready; its files are shredded") {
		t.Errorf("the agent's log lacks the ready line:\n%s", logs)
	}
}

// checkInspect checks the container as `docker inspect` shows it and returns the raw JSON.
func checkInspect(t *testing.T, ctx context.Context, e *nodeEnv, id string) string {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	res, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Container
	k := e.cfg.Container
	if c.Config.Image != e.img.Ref() || !strings.Contains(c.Config.Image, "@sha256:") {
		t.Errorf("image %q; want %s", c.Config.Image, e.img.Ref())
	}
	if img, err := cli.ImageInspect(ctx, e.img.Ref()); err != nil || c.Image != img.ID || !slices.Contains(img.RepoDigests, e.img.Ref()) {
		t.Errorf("container image %s, pulled image %s %v (%v); want the pulled digest", c.Image, img.ID, img.RepoDigests, err)
	}
	if c.Config.User != "14933:14933" || c.Config.Hostname != e.id.InstanceID {
		t.Errorf("user %q hostname %q", c.Config.User, c.Config.Hostname)
	}
	if len(c.Config.Env) != 0 && slices.ContainsFunc(c.Config.Env, func(kv string) bool {
		return strings.HasPrefix(kv, "CL_") || strings.HasPrefix(kv, "DATABASE")
	}) {
		t.Errorf("a 2.x node got configuration in its environment: %v", c.Config.Env)
	}
	b := c.HostConfig.PortBindings[nodePort]
	if len(b) != 1 || b[0].HostPort != fmt.Sprint(k.HostPort) {
		t.Errorf("port bindings %+v; want %d -> 6688/tcp", c.HostConfig.PortBindings, k.HostPort)
	}
	mounts := map[string]container.MountPoint{}
	for _, m := range c.Mounts {
		mounts[m.Destination] = m
	}
	for _, want := range []struct {
		src, dst string
		rw       bool
	}{
		{k.DataDir, nodefiles.DataMount, true},
		{k.SecretsDir, nodefiles.SecretsMount, false},
		{e.cfg.Node.Database.SSLRootCert, e.cfg.Node.Database.SSLRootCert, false},
	} {
		if m, ok := mounts[want.dst]; !ok || m.Source != want.src || m.RW != want.rw || m.Type != "bind" {
			t.Errorf("mount at %s = %+v; want bind of %s rw=%t", want.dst, m, want.src, want.rw)
		}
	}
	lc := c.HostConfig.LogConfig
	wantLog := map[string]string{"awslogs-group": k.Log.Group, "awslogs-region": "us-east-1",
		"awslogs-stream": e.id.InstanceID, "awslogs-create-group": "true", "mode": "non-blocking",
		"max-buffer-size": "4m", "awslogs-endpoint": k.Log.Options["awslogs-endpoint"]}
	for key, v := range wantLog {
		if lc.Type != "awslogs" || lc.Config[key] != v {
			t.Errorf("log config %s %v; want awslogs with %s=%s", lc.Type, lc.Config, key, v)
		}
	}
	if c.HostConfig.RestartPolicy.Name != container.RestartPolicyDisabled {
		t.Errorf("restart policy %q; want no", c.HostConfig.RestartPolicy.Name)
	}
	if c.Config.Labels[LabelManaged] != "true" || c.Config.Labels[LabelInstance] != e.id.InstanceID || len(c.Config.Labels[LabelConfigHash]) != 64 {
		t.Errorf("labels %v", c.Config.Labels)
	}
	return string(res.Raw)
}

// checkLeaseHost: the node took its database lease under the instance id (the container's host name).
func checkLeaseHost(t *testing.T, ctx context.Context, e *nodeEnv) {
	t.Helper()
	conn, err := pgx.Connect(ctx, e.pg.URL(e.dbName))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT DISTINCT host FROM standin_lease_intervals")
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !slices.Equal(hosts, []string{e.id.InstanceID}) {
		t.Errorf("lease holders %v (%v); want [%s]", hosts, err, e.id.InstanceID)
	}
}

// checkCloudWatch reads the node's log lines back from CloudWatch Logs (moto): group as configured, stream
// named after the instance.
func checkCloudWatch(t *testing.T, ctx context.Context, moto *testenv.Moto, group, stream string) {
	t.Helper()
	cw := cloudwatchlogs.New(cloudwatchlogs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(moto.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	var got []string
	testenv.WaitFor(t, 30*time.Second, "the node's \"ready\" line in CloudWatch Logs", func() bool {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, err := cw.GetLogEvents(callCtx, &cloudwatchlogs.GetLogEventsInput{
			LogGroupName: aws.String(group), LogStreamName: aws.String(stream), StartFromHead: aws.Bool(true)})
		if err != nil {
			got = []string{err.Error()}
			return false
		}
		got = got[:0]
		for _, ev := range out.Events {
			got = append(got, aws.ToString(ev.Message))
			var line struct{ Msg string }
			if json.Unmarshal([]byte(aws.ToString(ev.Message)), &line) == nil && line.Msg == "ready" {
				return true
			}
		}
		return false
	})
	if len(got) == 0 {
		t.Errorf("no log events")
	}
}

// TestCrashLoopBacksOff: a node that exits at once is started again and again with growing delays, its files
// present only while it starts; once the cause is gone it comes up.
func TestCrashLoopBacksOff(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e := newNodeEnv(t, ctx, envOptions{})
	crash := filepath.Join(e.cfg.Container.DataDir, "standin-crash")
	if err := os.MkdirAll(e.cfg.Container.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crash, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	owner := nodefiles.Owner(e.cfg.Container) // the node's own directory, as the agent would have made it
	for _, p := range []string{e.cfg.Container.DataDir, crash} {
		if err := os.Chown(p, owner.UID, owner.GID); err != nil {
			t.Fatal(err)
		}
	}
	o := e.options()
	o.ReadyTimeout = 30 * time.Second // a crash must be noticed long before this
	var mu sync.Mutex
	var history []Status
	o.OnStatus = func(st Status) { mu.Lock(); history = append(history, st); mu.Unlock() }
	s, err := NewSupervisor(o)
	if err != nil {
		t.Fatal(err)
	}
	stop := runSupervisor(t, s)
	testenv.WaitFor(t, 60*time.Second, "four failed starts", func() bool { return s.Status().Restarts >= 4 })
	if err := os.Remove(crash); err != nil {
		t.Fatal(err)
	}
	st := waitNodeReady(t, s, 60*time.Second, "")
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	var delays []time.Duration
	for _, h := range history {
		if h.State == StateBackoff {
			delays = append(delays, h.RetryAt.Sub(h.Since))
			if !strings.Contains(h.LastError, "exited with code 1 before it was ready") {
				t.Errorf("backoff because %q; want the exit", h.LastError)
			}
		}
	}
	if len(delays) < 4 {
		t.Fatalf("%d backoffs; want at least 4", len(delays))
	}
	for i, want := range []time.Duration{200, 400, 800, 1600} {
		want *= time.Millisecond
		if delays[i] < want/2-time.Millisecond || delays[i] > want {
			t.Errorf("delay %d = %s; want in [%s, %s)", i, delays[i], want/2, want)
		}
	}
	if st.Restarts < 4 {
		t.Errorf("restarts %d", st.Restarts)
	}
}

// fileWatch records when the node's files exist: the supervisor's own record of each write and shred, and
// a sampler that lists secrets_dir every 2 ms and complains if it ever sees files while the node is ready.
type fileWatch struct {
	mu        sync.Mutex
	writes    [][2]time.Time
	seen      int
	violation string
}

func (f *fileWatch) record(written, shredded time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, [2]time.Time{written, shredded})
}

func (f *fileWatch) lifetimes() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, w := range f.writes {
		out = append(out, w[1].Sub(w[0]))
	}
	return out
}

func (f *fileWatch) sample(t *testing.T, s *Supervisor, dir string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			before := s.Status()
			present := nodeFiles(t, dir)
			after := s.Status()
			if len(present) == 0 {
				continue
			}
			f.mu.Lock()
			f.seen++
			// Ready before and after the listing, in the same container: the files were there while ready.
			if before.State == StateReady && after.State == StateReady && before.ContainerID == after.ContainerID && f.violation == "" {
				f.violation = fmt.Sprintf("%v in container %.12s", present, after.ContainerID)
			}
			f.mu.Unlock()
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}

func (f *fileWatch) seenWhileReady() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.violation
}

func (f *fileWatch) seenCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

func httpStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func jsonEscaped(s string) string {
	b, _ := json.Marshal(s)
	return strings.Trim(string(b), `"`)
}

// escapeUserinfo is how the password appears in the database URL.
func escapeUserinfo(s string) string {
	u := nodefiles.DatabaseURL(config.Database{User: "u", Host: "h", Port: 5432, Name: "d", SSLMode: "disable"}, s, "")
	_, rest, _ := strings.Cut(u, "postgresql://u:")
	pw, _, _ := strings.Cut(rest, "@")
	return pw
}
