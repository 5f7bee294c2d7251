package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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

// NewIMDSClient builds an IMDSv2-only client (no fallback to the token-less v1 protocol).
func NewIMDSClient(endpoint string) *imds.Client {
	return imds.New(imds.Options{Endpoint: endpoint, EnableFallback: aws.FalseTernary})
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
	if err != nil {
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
			if out.InstanceID == "" || out.Region == "" {
				return imds.InstanceIdentityDocument{}, errors.New("the identity document has no instance id or region")
			}
			return out.InstanceIdentityDocument, nil
		}
		if retry.Wait(ctx, clock) != nil {
			return imds.InstanceIdentityDocument{}, err // the last attempt's error says more than the deadline
		}
	}
}
