package container

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// stalledStream writes one progress line and then nothing until it is closed.
type stalledStream struct {
	first  io.Reader
	closed chan struct{}
}

func (s *stalledStream) Read(p []byte) (int, error) {
	if n, err := s.first.Read(p); n > 0 || !errors.Is(err, io.EOF) {
		return n, err
	}
	<-s.closed
	return 0, errors.New("read on closed stream")
}

func (s *stalledStream) Close() error {
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	return nil
}

func TestEnsureImage(t *testing.T) {
	t.Parallel()
	const ref = "registry.example/chainlink@sha256:0000000000000000000000000000000000000000000000000000000000000001"
	cases := []struct {
		name    string
		present []bool // ImagePresent answers, in order
		stream  func(ctx context.Context) io.ReadCloser
		want    string // "" for success
		pulls   int
	}{
		{name: "PresentIsNotPulled", present: []bool{true}, pulls: 0},
		{name: "AbsentIsPulled", present: []bool{false, true}, pulls: 1,
			stream: func(context.Context) io.ReadCloser {
				return io.NopCloser(strings.NewReader(`{"status":"Pulling from chainlink"}` + "\n" + `{"status":"Digest: sha256:01"}` + "\n"))
			}},
		{name: "ErrorInTheStream", present: []bool{false}, pulls: 1, want: "manifest unknown",
			stream: func(context.Context) io.ReadCloser {
				return io.NopCloser(strings.NewReader(`{"status":"Pulling"}` + "\n" +
					`{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}` + "\n"))
			}},
		{name: "StalledStream", present: []bool{false}, pulls: 1, want: "stalled: no progress for 50ms",
			stream: func(context.Context) io.ReadCloser {
				return &stalledStream{first: strings.NewReader(`{"status":"Pulling"}` + "\n"), closed: make(chan struct{})}
			}},
		{name: "SuccessWithoutImage", present: []bool{false, false}, pulls: 1, want: "does not have the image",
			stream: func(context.Context) io.ReadCloser { return io.NopCloser(strings.NewReader(`{"status":"done"}`)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pulls, asked := 0, 0
			e := &fakeEngine{t: t,
				ImagePresentFn: func(_ context.Context, got string) (bool, error) {
					if got != ref {
						t.Errorf("ImagePresent(%s)", got)
					}
					asked++
					return tc.present[asked-1], nil
				},
				PullFn: func(ctx context.Context, got string) (io.ReadCloser, error) {
					if got != ref {
						t.Errorf("PullImage(%s); want the digest reference", got)
					}
					pulls++
					s := tc.stream(ctx)
					go func() { <-ctx.Done(); s.Close() }() // as the real engine's stream ends with its context
					return s, nil
				},
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := EnsureImage(ctx, e, ref, 50*time.Millisecond, 5*time.Second, zaptest.NewLogger(t))
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
			if pulls != tc.pulls {
				t.Errorf("%d pulls; want %d", pulls, tc.pulls)
			}
		})
	}
}
