package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// probeClient never reuses connections: a probe must reach whoever listens now, not a socket from an earlier probe.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// httpProbe returns a readiness probe that succeeds when method url answers with status want.
func httpProbe(method, url string, header http.Header, want int) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return err
		}
		for k, vs := range header {
			req.Header[k] = vs
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		if resp.StatusCode != want {
			return fmt.Errorf("%s %s: status %d, want %d", method, url, resp.StatusCode, want)
		}
		return nil
	}
}

// probeWithTimeout runs one probe under probeTimeout.
func probeWithTimeout(ctx context.Context, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return probe(ctx)
}
