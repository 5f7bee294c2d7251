// Package bootstrap turns configuration into the node's files: it learns the host's identity from IMDSv2, fetches
// the node's three secrets from AWS Secrets Manager, checks them against the node's password rules, and renders
// the files of the node's configuration generation (.env for 1.x; config.toml + secrets.toml for 2.x; .password and
// .api for both) into the secrets directory, all or nothing.
//
// Secret values travel as Secret, which prints as [REDACTED] through fmt, JSON and zap; only Reveal gives the
// value, and only the renderers call it. Errors name the secret by its configuration key and Secrets Manager id,
// never by value.
//
// Failures and exit codes (DESIGN.md §7): access denied, a missing, empty or malformed secret, or one that breaks
// the node's rules is terminal (exit 5, systemd does not restart); throttling, 5xx and timeouts are retried with
// backoff and jitter inside the deadline, then reported as retryable (exit 1).
package bootstrap
