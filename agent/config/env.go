package config

import "strings"

// EnvOverrides lists the environment variables that replace a key after the file is read. They exist for the
// values that differ per host or per test run; everything else belongs in the file.
var EnvOverrides = map[string]string{
	"CL_AGENT_INSTANCE_ID":      "instance.id",
	"CL_AGENT_REGION":           "instance.region",
	"CL_AGENT_AWS_ENDPOINT_URL": "aws.endpoint_url",
	"CL_AGENT_IMDS_ENDPOINT":    "aws.imds_endpoint",
	"CL_AGENT_LOG_LEVEL":        "log_level",
}

func applyEnv(cfg *Config, lookup func(string) (string, bool)) error {
	targets := map[string]*string{
		"instance.id":       &cfg.Instance.ID,
		"instance.region":   &cfg.Instance.Region,
		"aws.endpoint_url":  &cfg.AWS.EndpointURL,
		"aws.imds_endpoint": &cfg.AWS.IMDSEndpoint,
		"log_level":         &cfg.LogLevel,
	}
	for env, key := range EnvOverrides {
		if v, ok := lookup(env); ok {
			*targets[key] = strings.TrimSpace(v)
		}
	}
	return nil
}
