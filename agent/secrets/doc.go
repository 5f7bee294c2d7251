// Package secrets owns the node's three secrets (the database, API and keystore passwords): the Secret type that
// carries them, their fetch from AWS Secrets Manager, and the node's password rules they are held to.
//
// Secret values travel as Secret, which prints as [REDACTED] through fmt, JSON and zap; only Reveal gives the
// value, and only the node files' renderers call it. Errors name the secret by its configuration key and Secrets
// Manager id, never by value.
//
// The password rules are the node's own (v2.19.0, sources cited in passwords.go), counted in bytes. One of them
// depends on the node's state: the keystore password's strength applies only while its keystore is empty, which
// only the node's database tells (KeystoreEmpty); Fetch and Check apply the rest, CheckKeystore that one.
//
// Failures: access denied, a missing, empty or malformed secret, or one that breaks the node's rules is a terminal
// *Error (exitcode.Terminal, 5: systemd does not restart the agent); throttling, 5xx and timeouts are retried by the
// SDK with backoff and jitter within the bound, then reported as retryable (exitcode.Retry, 1).
package secrets
