package identity

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/config"
)

// fakeIMDS answers the IMDSv2 token and the identity document with doc, encoded as it comes (a map, so a test
// can put any value in any field), through the real SDK client.
func fakeIMDS(t *testing.T, doc map[string]any, setLength bool) string {
	t.Helper()
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			_, _ = w.Write([]byte("test-token"))
		case r.Method == http.MethodGet && r.URL.Path == "/latest/dynamic/instance-identity/document":
			if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "test-token" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			if setLength {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			}
			_, _ = w.Write(body)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func identityDoc(id, region, az, ip string) map[string]any {
	return map[string]any{"instanceId": id, "region": region, "availabilityZone": az, "privateIp": ip,
		"accountId": "111122223333", "architecture": "x86_64", "imageId": "ami-0123456789abcdef0"}
}

// TestResolveAcceptsAWSFormats: the ids, regions and zones AWS uses, GovCloud and Local Zones included.
func TestResolveAcceptsAWSFormats(t *testing.T) {
	t.Parallel()
	for _, doc := range []Identity{
		{"i-0123456789abcdef0", "us-east-1", "us-east-1a", "10.0.1.10"},
		{"i-1234abcd", "eu-west-1", "eu-west-1c", "172.31.5.6"},
		{"i-0fedcba9876543210", "us-gov-west-1", "us-gov-west-1a", "10.1.0.5"},
		{"i-0fedcba9876543210", "ap-southeast-3", "ap-southeast-3b", "10.2.0.5"},
		{"i-0fedcba9876543210", "us-west-2", "us-west-2-lax-1a", "10.3.0.5"},
		{"i-0fedcba9876543210", "us-east-1", "us-east-1-wl1-bos-wlz-1", "10.4.0.5"},
		{"i-0fedcba9876543210", "il-central-1", "il-central-1a", "2600:1f18:aaaa:bbbb::10"},
	} {
		url := fakeIMDS(t, identityDoc(doc.InstanceID, doc.Region, doc.AZ, doc.PrivateIP), false)
		got, warning, err := Resolve(context.Background(), NewIMDSClient(url), config.Instance{}, 5*time.Second)
		if err != nil || warning != nil || got != doc {
			t.Errorf("%+v: got %+v, warning %v, error %v", doc, got, warning, err)
		}
	}
}

// TestResolveRefusesWhatIsNotAnEC2Identity: an answer out of AWS's formats, or an oversized one, is refused at
// once (not retried until the timeout, not called an outage) with the value quoted and cut to 64 bytes.
func TestResolveRefusesWhatIsNotAnEC2Identity(t *testing.T) {
	t.Parallel()
	const id, region, az, ip = "i-0123456789abcdef0", "us-east-1", "us-east-1a", "10.0.1.10"
	huge := "i-" + strings.Repeat("0", 20<<20) // a 20 MB instance id used to be accepted
	cases := []struct {
		name      string
		doc       map[string]any
		setLength bool
		says      string
	}{
		{"ShortInstanceID", identityDoc("i-123", region, az, ip), false, `instance id "i-123"`},
		{"NineHexInstanceID", identityDoc("i-123456789", region, az, ip), false, `instance id "i-123456789"`},
		{"UpperCaseInstanceID", identityDoc("i-0123456789ABCDEF0", region, az, ip), false, "instance id"},
		{"NotHexInstanceID", identityDoc("i-0123456789abcdefg", region, az, ip), false, "instance id"},
		{"HTMLPage", identityDoc("<html>", region, az, ip), false, `instance id "<html>"`},
		{"NoInstanceID", identityDoc("", region, az, ip), false, `instance id ""`},
		{"LongInstanceIDIsCut", identityDoc("i-"+strings.Repeat("x", 200), region, az, ip), false, `"i-` + strings.Repeat("x", 62) + `" is not`},
		{"HugeInstanceIDChunked", identityDoc(huge, region, az, ip), false, "over 65536 bytes"},
		{"HugeInstanceIDWithLength", identityDoc(huge, region, az, ip), true, "over 65536 bytes"},
		{"RegionWithoutNumber", identityDoc(id, "us-east", az, ip), false, `region "us-east"`},
		{"UpperCaseRegion", identityDoc(id, "US-EAST-1", "US-EAST-1a", ip), false, "region"},
		{"RegionWithText", identityDoc(id, "us-east-1 x", "us-east-1 xa", ip), false, `region "us-east-1 x"`},
		{"ZoneOfAnotherRegion", identityDoc(id, region, "us-west-2a", ip), false, `availability zone "us-west-2a"`},
		{"ZoneWithoutLetter", identityDoc(id, region, "us-east-1", ip), false, "availability zone"},
		{"ZoneWithTrailingDash", identityDoc(id, region, "us-east-1-", ip), false, "availability zone"},
		{"ZoneWithNewline", identityDoc(id, region, "us-east-1a\nx", ip), false, `availability zone "us-east-1a\nx"`},
		{"ShortIP", identityDoc(id, region, az, "10.0.1"), false, `private IP "10.0.1"`},
		{"NotAnIP", identityDoc(id, region, az, "localhost"), false, `private IP "localhost"`},
		{"NoIP", identityDoc(id, region, az, ""), false, `private IP ""`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := fakeIMDS(t, tc.doc, tc.setLength)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, _, err := Resolve(ctx, NewIMDSClient(url), config.Instance{}, 10*time.Second)
			if !errors.Is(err, ErrBadAnswer) || errors.Is(err, ErrIMDSUnavailable) {
				t.Fatalf("got %v, want ErrBadAnswer", err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if len(err.Error()) > 600 {
				t.Errorf("error is %d bytes long: the value was not cut", len(err.Error()))
			}
		})
	}
}

// TestResolveConfiguredIdentityOutlivesABadAnswer: with instance.id and instance.region set, a bad answer is a
// warning and the configured values are used, as when IMDS does not answer at all.
func TestResolveConfiguredIdentityOutlivesABadAnswer(t *testing.T) {
	t.Parallel()
	url := fakeIMDS(t, identityDoc("<html>", "us-east-1", "us-east-1a", "10.0.1.10"), false)
	inst := config.Instance{ID: "i-0aaaaaaaaaaaaaaa1", Region: "eu-west-1"}
	got, warning, err := Resolve(context.Background(), NewIMDSClient(url), inst, 5*time.Second)
	if err != nil || !errors.Is(warning, ErrBadAnswer) || got.InstanceID != inst.ID || got.Region != inst.Region {
		t.Fatalf("got %+v, warning %v, error %v", got, warning, err)
	}
}
