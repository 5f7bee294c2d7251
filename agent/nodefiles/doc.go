// Package nodefiles owns the node's files: it renders the files of the node's configuration generation from the
// configuration, the host's identity and the node's secrets (.env for 1.x; config.toml + secrets.toml for 2.x;
// .password and .api for both), writes them into the secrets directory all or nothing (0400, owned by the node's
// user) and shreds them. The supervisor renders and writes them before every start of the node, not only at
// boot, and shreds them once the node is ready.
//
// Render first holds the secrets to the node's rules (secrets.Check) and node.extra_toml to the agent's: a
// violation is a terminal *secrets.Error or a *config.FieldError, before anything is written. The last word on a
// rendered configuration is the node's own `validate`: Validator is the hook through which a caller runs it on the
// written files (ValidateWithNode); a refusal is a *RefusedError, a configuration error (exitcode.Config).
package nodefiles
