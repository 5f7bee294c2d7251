package health

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxBody bounds what the checks read from any answer.
const maxBody = 4 << 20

// get does GET url and returns the status and the body (at most maxBody bytes).
func get(ctx context.Context, c *http.Client, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	return do(c, req)
}

func do(c *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read the answer of %s %s: %w", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, body, nil
}

// decode parses a JSON body, naming what it was.
func decode(body []byte, what string, out any) error {
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s is not the expected JSON: %w", what, err)
	}
	return nil
}

// oneLine shortens s to one line of at most n bytes, for a Result's Detail.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// newHTTPClient is the checks' client: no client-wide timeout (each run's context is the deadline) and no
// redirects (a probe that redirects is wrong, and following would lose the meaning of the status).
func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
