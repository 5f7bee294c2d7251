package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Identity is what the instance metadata service says about the instance.
type Identity struct {
	InstanceID string // i-0123456789abcdef0
	Region     string // us-east-1
	AZ         string // us-east-1a
	PrivateIP  string // 10.0.1.10
}

// IMDS is an EC2 instance metadata mock (amazon-ec2-metadata-mock v1.13.0) on loopback, IMDSv2 only: every request
// needs a token from PUT /latest/api/token, a GET without one gets 401.
type IMDS struct {
	URL      string // http://127.0.0.1:PORT
	Identity Identity

	proc *proc
}

// StartIMDS starts the mock serving id (instance-id, local-ipv4, placement/region and availability-zone, hostname and
// the instance identity document), with its config and log in dir, and waits until a token can be had.
func StartIMDS(ctx context.Context, dir string, id Identity) (*IMDS, error) {
	if id.InstanceID == "" || id.Region == "" || id.AZ == "" || id.PrivateIP == "" {
		return nil, fmt.Errorf("imds identity incomplete: %+v", id)
	}
	bin, err := toolPath(ctx, "ec2-metadata-mock")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("imds dir: %w", err)
	}
	configPath := filepath.Join(dir, "imds-config.json")
	if err := writeIMDSConfig(configPath, id); err != nil {
		return nil, err
	}
	return withFreePort(func(port int) (*IMDS, error) {
		cmd := exec.Command(bin, "-n", "127.0.0.1", "-p", strconv.Itoa(port), "-I", "-c", configPath)
		cmd.Dir = dir
		p, err := startProc("ec2-metadata-mock", filepath.Join(dir, "imds.log"), cmd)
		if err != nil {
			return nil, err
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		tokenTTL := http.Header{"X-Aws-Ec2-Metadata-Token-Ttl-Seconds": {"60"}}
		if err := p.waitReady(ctx, port, httpProbe(http.MethodPut, url+"/latest/api/token", tokenTTL, http.StatusOK)); err != nil {
			return nil, err
		}
		// The agent must work against IMDSv2-only instances: a mock that answers without a token proves nothing.
		if err := probeWithTimeout(ctx, httpProbe(http.MethodGet, url+"/latest/meta-data/instance-id", nil, http.StatusUnauthorized)); err != nil {
			return nil, p.startFailure(fmt.Errorf("does not refuse IMDSv1: %w", err))
		}
		return &IMDS{URL: url, Identity: id, proc: p}, nil
	})
}

// Stop terminates the mock. Safe to call more than once.
func (m *IMDS) Stop() error {
	return m.proc.stop(syscall.SIGTERM, stopGrace)
}

// writeIMDSConfig writes the mock's config file (the layout of its aemm-metadata-default-values.json); keys left out
// keep the mock's defaults.
func writeIMDSConfig(path string, id Identity) error {
	hostname := "ip-" + strings.ReplaceAll(id.PrivateIP, ".", "-") + "." + ec2InternalDomain(id.Region)
	config := map[string]any{
		"metadata": map[string]any{"values": map[string]any{
			"instance-id":                 id.InstanceID,
			"local-ipv4":                  id.PrivateIP,
			"mac-local-ipv4s":             id.PrivateIP,
			"hostname":                    hostname,
			"local-hostname":              hostname,
			"mac-local-hostname":          hostname,
			"placement-region":            id.Region,
			"placement-availability-zone": id.AZ,
		}},
		"dynamic": map[string]any{"values": map[string]any{
			"instance-identity-document": map[string]any{
				"accountId":               "123456789012",
				"architecture":            "x86_64",
				"availabilityZone":        id.AZ,
				"billingProducts":         nil,
				"devpayProductCodes":      nil,
				"imageId":                 "ami-0b69ea66ff7391e80",
				"instanceId":              id.InstanceID,
				"instanceType":            "m5.large",
				"kernelId":                nil,
				"marketplaceProductCodes": nil,
				"pendingTime":             "2024-01-01T00:00:00Z",
				"privateIp":               id.PrivateIP,
				"ramdiskId":               nil,
				"region":                  id.Region,
				"version":                 "2017-09-30",
			},
		}},
	}
	b, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write imds config: %w", err)
	}
	return nil
}

func ec2InternalDomain(region string) string {
	if region == "us-east-1" {
		return "ec2.internal"
	}
	return region + ".compute.internal"
}
