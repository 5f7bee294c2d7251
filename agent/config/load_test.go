package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadAppliesEnvOverrides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(minimal+"instance: {id: i-0aaa}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CL_AGENT_INSTANCE_ID", "i-0bbb")
	t.Setenv("CL_AGENT_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Instance.ID != "i-0bbb" || c.AWS.EndpointURL != "http://127.0.0.1:5000" {
		t.Errorf("overrides not applied: %+v %+v", c.Instance, c.AWS)
	}
	t.Setenv("CL_AGENT_IMDS_ENDPOINT", "not a url")
	if _, err := Load(path); !errors.Is(err, ErrInvalid) {
		t.Errorf("a bad override must fail validation, got %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "--config" {
		t.Fatalf("got %v", err)
	}
}
