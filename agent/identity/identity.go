package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/jonboulle/clockwork"

	"github.com/cl-agent/cl-agent/agent/backoff"
	"github.com/cl-agent/cl-agent/agent/config"
)

// Identity is who and where this host is.
type Identity struct {
	InstanceID string `json:"instance_id"`
	Region     string `json:"region"`
	AZ         string `json:"availability_zone"`
	PrivateIP  string `json:"private_ip"`
}

// ErrIMDSUnavailable means the instance metadata service did not answer within the bound.
var ErrIMDSUnavailable = errors.New("the instance metadata service did not answer")

// IMDSAPI is the one IMDS call the agent makes.
type IMDSAPI interface {
	GetInstanceIdentityDocument(ctx context.Context, in *imds.GetInstanceIdentityDocumentInput, optFns ...func(*imds.Options)) (*imds.GetInstanceIdentityDocumentOutput, error)
}

// ErrBadAnswer means IMDS answered something that is not an EC2 identity (a proxy's page, a misconfigured
// aws.imds_endpoint, a forged or oversized answer). The agent refuses it rather than name its lock session,
// metrics and logs after it.
var ErrBadAnswer = errors.New("the instance metadata service's answer is not an EC2 identity")

// maxResponseBytes bounds each IMDS response (the session token, the identity document: a few hundred bytes).
const maxResponseBytes = 64 << 10

// NewIMDSClient builds an IMDSv2-only client (no fallback to the token-less v1 protocol) that reads at most
// maxResponseBytes of each response. Its HTTP client keeps the SDK's fail-fast IMDS timeouts.
func NewIMDSClient(endpoint string) *imds.Client {
	inner := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = 250 * time.Millisecond }).
		WithTransportOptions(func(tr *http.Transport) { tr.ResponseHeaderTimeout = 500 * time.Millisecond })
	return imds.New(imds.Options{Endpoint: endpoint, EnableFallback: aws.FalseTernary, HTTPClient: cappedClient{inner}})
}

// whenConfigured bounds the IMDS wait when the configuration already names the instance and region: IMDS then
// only adds the availability zone and address, and a host off EC2 should not wait long for it.
const whenConfigured = 2 * time.Second

// Resolve asks IMDS for the identity document and lets instance.id and instance.region override it. It
// retries with backoff until timeout; without an answer it fails, unless the configuration already names both the
// instance and the region, in which case it returns those and a non-nil warning.
func Resolve(ctx context.Context, api IMDSAPI, inst config.Instance, timeout time.Duration) (id Identity, warning, err error) {
	configured := inst.ID != "" && inst.Region != ""
	if configured {
		timeout = min(timeout, whenConfigured)
	}
	doc, err := document(ctx, api, timeout)
	if errors.Is(err, ErrBadAnswer) {
		if !configured {
			return Identity{}, nil, fmt.Errorf("%w; check aws.imds_endpoint, or set instance.id and instance.region", err)
		}
		warning = fmt.Errorf("%w; using instance.id and instance.region from the configuration", err)
	} else if err != nil {
		if !configured {
			return Identity{}, nil, fmt.Errorf("%w within %s: %v; set instance.id and instance.region to run without it", ErrIMDSUnavailable, timeout, err)
		}
		warning = fmt.Errorf("%w within %s (%v); using instance.id and instance.region from the configuration", ErrIMDSUnavailable, timeout, err)
	}
	id = Identity{InstanceID: doc.InstanceID, Region: doc.Region, AZ: doc.AvailabilityZone, PrivateIP: doc.PrivateIP}
	if inst.ID != "" {
		id.InstanceID = inst.ID
	}
	if inst.Region != "" {
		id.Region = inst.Region
	}
	return id, warning, nil
}

func document(ctx context.Context, api IMDSAPI, timeout time.Duration) (imds.InstanceIdentityDocument, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	retry := backoff.New(100*time.Millisecond, 2*time.Second)
	clock := clockwork.NewRealClock()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		out, err := api.GetInstanceIdentityDocument(attempt, &imds.GetInstanceIdentityDocumentInput{})
		cancelAttempt()
		if err == nil {
			if err := checkDocument(out.InstanceIdentityDocument); err != nil {
				return imds.InstanceIdentityDocument{}, err // an answer, not an outage: asking again will not help
			}
			return out.InstanceIdentityDocument, nil
		}
		if errors.Is(err, ErrBadAnswer) {
			return imds.InstanceIdentityDocument{}, err
		}
		if retry.Wait(ctx, clock) != nil {
			return imds.InstanceIdentityDocument{}, err // the last attempt's error says more than the deadline
		}
	}
}

var (
	instanceIDRE = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
	// regionRE: two letters, one or more words, a number: us-east-1, us-gov-west-1, us-isob-east-1,
	// ap-southeast-3, il-central-1, cn-northwest-1.
	regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
	// zoneSuffixRE is what follows the region in a zone's name: a letter (us-east-1a), or the rest of a Local
	// Zone's (us-west-2-lax-1a) or Wavelength Zone's (us-east-1-wl1-bos-wlz-1) name.
	zoneSuffixRE = regexp.MustCompile(`^([a-z]|(-[a-z0-9]+)+)$`)
)

// checkDocument refuses an identity document whose instance id, region, zone or private IP is not in AWS's
// format, or whose zone is not in its region. The refused value is quoted and cut to 64 bytes.
func checkDocument(doc imds.InstanceIdentityDocument) error {
	switch {
	case !instanceIDRE.MatchString(doc.InstanceID):
		return badAnswer("instance id", doc.InstanceID, "i- and 8 or 17 lower-case hex digits")
	case !regionRE.MatchString(doc.Region):
		return badAnswer("region", doc.Region, "such as us-east-1 or us-gov-west-1")
	case !strings.HasPrefix(doc.AvailabilityZone, doc.Region) || !zoneSuffixRE.MatchString(doc.AvailabilityZone[len(doc.Region):]):
		return badAnswer("availability zone", doc.AvailabilityZone, "the region "+doc.Region+" and a letter, or a Local Zone such as us-west-2-lax-1a")
	}
	if _, err := netip.ParseAddr(doc.PrivateIP); err != nil {
		return badAnswer("private IP", doc.PrivateIP, "an IPv4 or IPv6 address")
	}
	return nil
}

func badAnswer(what, value, format string) error {
	const limit = 64
	if len(value) > limit {
		value = value[:limit] // %q escapes whatever the cut leaves of a rune
	}
	return fmt.Errorf("%w: the %s %q is not in AWS's format (%s)", ErrBadAnswer, what, value, format)
}

// errTooLarge: an IMDS response longer than maxResponseBytes. The SDK does not retry it: the next answer would
// be the same.
var errTooLarge error = tooLargeError{}

type tooLargeError struct{}

func (tooLargeError) Error() string {
	return fmt.Sprintf("%v: a response is over %d bytes", ErrBadAnswer, maxResponseBytes)
}
func (tooLargeError) Unwrap() error        { return ErrBadAnswer }
func (tooLargeError) RetryableError() bool { return false } // read by the SDK's retryer

// cappedClient fails a response whose body is longer than maxResponseBytes, before the SDK buffers or decodes it.
type cappedClient struct{ inner imds.HTTPClient }

func (c cappedClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.inner.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > maxResponseBytes {
		resp.Body.Close()
		return nil, errTooLarge
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: maxResponseBytes}
	return resp, nil
}

// cappedBody reads through to its body until more than left bytes have come, then fails.
type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.left -= int64(n); b.left < 0 {
		return 0, errTooLarge
	}
	return n, err
}
