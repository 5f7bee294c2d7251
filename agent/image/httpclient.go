package image

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cl-agent/cl-agent/agent/backoff"
	"github.com/hashicorp/go-retryablehttp"
	"go.uber.org/zap"
)

// Retry defaults for image resolution. A dead source costs at most
// (retries+1) × timeout per request, and the caller's ctx bounds the whole resolve.
const (
	defaultRequestTimeout = 20 * time.Second
	defaultRetryMax       = 4
	defaultRetryWaitMin   = 500 * time.Millisecond
	defaultRetryWaitMax   = 30 * time.Second // also caps a server's Retry-After
	maxResponseBytes      = 8 << 20          // a page of tags, a manifest, a config blob
)

// HTTPError is a request of the image resolution that failed: no answer, retries used up, or a status the
// caller did not expect. errors.Is(err, ErrUnreachable) tells whether the source could not be reached (no
// answer, timeout, 429 or 5xx): only then may a saved choice stand in.
type HTTPError struct {
	Op       string // what was being done: "list tags of smartcontract/chainlink"
	Method   string
	URL      string // never carries credentials (user info is dropped)
	Status   int    // 0 when no response arrived
	Attempts int    // 0 when unknown
	Err      error  // why: transport error, timeout, policy; nil for an unexpected status alone
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s: %s %s", e.Op, e.Method, e.URL)
	if e.Status != 0 {
		msg += fmt.Sprintf(": status %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Attempts > 1 {
		msg += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return msg
}

func (e *HTTPError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) true for failures that say nothing about the image: the source did
// not answer, timed out, was rate limited or failed on its side (5xx but 501, which is an answer). A cancelled
// ctx (shutdown) is not one.
func (e *HTTPError) Is(target error) bool {
	if target != ErrUnreachable || errors.Is(e.Err, context.Canceled) {
		return false
	}
	return e.Status == 0 || e.Status == http.StatusTooManyRequests || (e.Status >= 500 && e.Status != http.StatusNotImplemented)
}

// retryPolicy holds the knobs of httpClient; the zero value means the defaults. Tests shorten the waits and
// watch them through onWait.
type retryPolicy struct {
	max     int           // retries after the first attempt
	waitMin time.Duration // first backoff, doubled per attempt, with jitter
	waitMax time.Duration // cap on one wait, Retry-After included
	now     func() time.Time
	onWait  func(time.Duration) // called with every wait chosen; nil in production
}

func (p retryPolicy) withDefaults() retryPolicy {
	if p.max == 0 {
		p.max = defaultRetryMax
	}
	if p.waitMin == 0 {
		p.waitMin = defaultRetryWaitMin
	}
	if p.waitMax == 0 {
		p.waitMax = defaultRetryWaitMax
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// httpClient is the one HTTP path of image resolution: a per-request timeout, bounded retries on transient
// failures (connection errors, timeouts, 429, 5xx but 501) honouring Retry-After, never a retry on another 4xx.
type httpClient struct {
	hc      *http.Client
	timeout time.Duration
	policy  retryPolicy
	log     *zap.Logger
}

func newHTTPClient(timeout time.Duration, policy retryPolicy, log *zap.Logger) *httpClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = timeout
	return &httpClient{
		hc:      &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: sameHostRedirect},
		timeout: timeout,
		policy:  policy.withDefaults(),
		log:     log,
	}
}

// errRedirectRefused: the answer redirected to another host, or too often. Never retried.
var errRedirectRefused = errors.New("redirect refused")

// maxRedirects bounds a chain of redirects on one host.
const maxRedirects = 5

// sameHostRedirect follows a redirect only to the same scheme and host as the original request: a registry or
// Hub answer that points elsewhere (http://169.254.169.254/…, an internal address) is refused, not fetched.
func sameHostRedirect(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	switch {
	case len(via) >= maxRedirects:
		return fmt.Errorf("%w: stopped after %d redirects", errRedirectRefused, len(via))
	case req.URL.Scheme != first.Scheme || req.URL.Host != first.Host:
		return fmt.Errorf("%w: refusing a redirect from %s://%s to another host: %s", errRedirectRefused, first.Scheme, first.Host, redactURL(req.URL.String()))
	}
	return nil
}

// do sends one request, retrying as the policy says. When the last answer is not retried it is returned
// whatever its status: the caller checks it and closes the body. Otherwise the error is an *HTTPError.
func (c *httpClient) do(ctx context.Context, op, method, rawURL string, header http.Header) (*http.Response, error) {
	shown := redactURL(rawURL)
	req, err := retryablehttp.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return nil, &HTTPError{Op: op, Method: method, URL: shown, Err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "cl-agent")

	rc := &retryablehttp.Client{
		HTTPClient:   c.hc,
		Logger:       nil, // retries are logged below, at debug, with the operation
		RetryWaitMin: c.policy.waitMin,
		RetryWaitMax: c.policy.waitMax,
		RetryMax:     c.policy.max,
		CheckRetry:   c.checkRetry,
		Backoff:      c.backoff,
		RequestLogHook: func(_ retryablehttp.Logger, r *http.Request, attempt int) {
			if attempt > 0 {
				c.log.Debug("retrying request", zap.String("op", op), zap.String("url", shown), zap.Int("attempt", attempt+1))
			}
		},
		ErrorHandler: func(resp *http.Response, err error, tries int) (*http.Response, error) {
			he := &HTTPError{Op: op, Method: method, URL: shown, Attempts: tries, Err: c.explain(ctx, err)}
			if resp != nil {
				he.Status = resp.StatusCode
				drain(resp)
			}
			return nil, he
		},
	}
	resp, err := rc.Do(req)
	if err != nil {
		var he *HTTPError
		if errors.As(err, &he) {
			return nil, he
		}
		// The ctx ended during a wait between attempts.
		return nil, &HTTPError{Op: op, Method: method, URL: shown, Err: c.explain(ctx, err)}
	}
	return resp, nil
}

// explain turns a transport error into one that says which bound was hit.
func (c *httpClient) explain(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is already in HTTPError
	}
	switch {
	case ctx.Err() != nil:
		cause := context.Cause(ctx)
		if dl, ok := ctx.Deadline(); ok && errors.Is(cause, context.DeadlineExceeded) {
			return fmt.Errorf("deadline of the image resolution reached (%s): %w", dl.Format(time.RFC3339), cause)
		}
		return cause
	case isTimeout(err):
		return fmt.Errorf("no answer within %s: %w", c.timeout, err)
	}
	return err
}

// checkRetry is the retryablehttp.CheckRetry: retry connection errors, timeouts, 429 and 5xx except 501;
// never another status, never once ctx is done, and not when the server asks for a wait longer than what is
// left before ctx's deadline (that would only fail later with a vaguer error).
func (c *httpClient) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return !isCertError(err) && !errors.Is(err, errRedirectRefused), nil
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests, s >= 500 && s != http.StatusNotImplemented:
		if wait, ok := retryAfter(resp, c.policy.now()); ok {
			if dl, has := ctx.Deadline(); has && wait > dl.Sub(c.policy.now()) {
				return false, fmt.Errorf("server asks to retry after %s, more than the %s left before the deadline",
					wait, dl.Sub(c.policy.now()).Round(time.Millisecond))
			}
		}
		return true, nil
	}
	return false, nil
}

// backoff is the retryablehttp.Backoff: the server's Retry-After on 429/503, else exponential from min with
// jitter; never more than max.
func (c *httpClient) backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	wait, ok := retryAfter(resp, c.policy.now())
	if !ok {
		wait = maxWait
		if attempt < 30 && minWait<<attempt < maxWait {
			wait = minWait << attempt
		}
		wait = backoff.Spread(wait)
	}
	wait = min(wait, maxWait)
	if c.policy.onWait != nil {
		c.policy.onWait(wait)
	}
	return wait
}

// retryAfter reads how long a 429 or 503 asks the client to wait: Retry-After in seconds or as an HTTP date,
// or Docker Hub's older X-Retry-After, a unix time.
func retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, false
	}
	if v := resp.Header.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
			return time.Duration(secs) * time.Second, true
		}
		if at, err := http.ParseTime(v); err == nil {
			return max(at.Sub(now), 0), true
		}
	}
	if v := resp.Header.Get("X-Retry-After"); v != "" {
		if unix, err := strconv.ParseInt(v, 10, 64); err == nil && unix > 0 {
			return max(time.Unix(unix, 0).Sub(now), 0), true
		}
	}
	return 0, false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func isCertError(err error) bool {
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr x509.CertificateInvalidError
	)
	return errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr)
}

// readBody reads a whole response body, up to limit, and closes it. A body cut short is a network failure.
func readBody(resp *http.Response, op, method, rawURL string) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, &HTTPError{Op: op, Method: method, URL: redactURL(rawURL), Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if len(b) > maxResponseBytes {
		return nil, fmt.Errorf("%s: %s %s: answer larger than %d bytes", op, method, redactURL(rawURL), maxResponseBytes)
	}
	return b, nil
}

// statusError is the error for an answer the caller did not expect.
func statusError(resp *http.Response, op string) *HTTPError {
	drain(resp)
	return &HTTPError{Op: op, Method: resp.Request.Method, URL: redactURL(resp.Request.URL.String()), Status: resp.StatusCode}
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// redactURL drops user info so that no credential reaches an error or a log line.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}
