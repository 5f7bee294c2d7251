// Package bootstrap turns configuration into the node's files: it learns the host's identity from IMDSv2, fetches
// the node's three secrets from AWS Secrets Manager, checks them against the node's password rules, and renders
// the files of the node's configuration generation (.env for 1.x; config.toml + secrets.toml for 2.x; .password and
// .api for both) into the secrets directory, all or nothing.
//
// Secret values travel as Secret, which prints as [REDACTED] through fmt, JSON and zap; only Reveal gives the
// value, and only the renderers call it. Errors name the secret by its configuration key and Secrets Manager id,
// never by value.
//
// The password rules are the node's own (v2.19.0, sources cited in passwords.go), counted in bytes. One of them
// depends on the node's state: the keystore password's strength applies only while its keystore is empty, which
// only the node's database tells (KeystoreEmpty); Render and FetchSecrets apply the rest, CheckKeystore that one.
// NodeValidator is the hook through which a caller runs the node's own `validate` on written files.
//
// Failures and exit codes (DESIGN.md §7): access denied, a missing, empty or malformed secret, or one that breaks
// the node's rules is terminal (exit 5, systemd does not restart); throttling, 5xx and timeouts are retried with
// backoff and jitter inside the deadline, then reported as retryable (exit 1).
package bootstrap
