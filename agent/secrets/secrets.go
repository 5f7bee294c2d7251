package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/exitcode"
)

// Sentinels for secret failures; test with errors.Is.
var (
	ErrAccessDenied = errors.New("access denied")
	ErrMissing      = errors.New("not found")
	ErrEmpty        = errors.New("is empty")
	ErrFormat       = errors.New("is not in the expected format")
)

// Error is a failure to obtain or accept one secret. It names the secret by its configuration key and id,
// never by value. Terminal errors exit 5: retrying cannot help until an operator acts.
type Error struct {
	Key      string // configuration key, e.g. "api_password"
	ID       string // Secrets Manager id
	Terminal bool
	Err      error
}

func (e *Error) Error() string {
	return fmt.Sprintf("secret %s (id %q): %v", e.Key, e.ID, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode is exitcode.Terminal for a terminal failure and exitcode.Retry for one worth retrying.
func (e *Error) ExitCode() int {
	if e.Terminal {
		return exitcode.Terminal
	}
	return exitcode.Retry
}

// API is the one Secrets Manager call the agent makes.
type API interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// NewClient builds a Secrets Manager client with the agent's retry policy: the SDK's standard retryer
// (exponential backoff with full jitter, retrying throttling, 5xx and connection errors only) with maxAttempts
// tries, and a per-attempt HTTP timeout so one hung attempt cannot use the whole budget.
func NewClient(cfg aws.Config, endpoint string, maxAttempts int, attemptTimeout time.Duration) *secretsmanager.Client {
	return secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = maxAttempts
			so.MaxBackoff = 5 * time.Second
		})
		o.HTTPClient = awshttp.NewBuildableClient().WithTimeout(attemptTimeout)
	})
}

// Fetch gets the three secrets and checks them with Check. Each fetch is bounded by timeout (retries
// included). apiEmail is unused: the e-mail rule is the node's web API's, not a rule of the .api file the node
// reads (see CheckAPIPasswordChange); the parameter stays for the callers.
func Fetch(ctx context.Context, api API, refs config.Secrets, apiEmail string, timeout time.Duration) (NodeSecrets, error) {
	var out NodeSecrets
	steps := []struct {
		key string
		ref config.SecretRef
		dst *Secret
	}{
		{"database_password", refs.DatabasePassword, &out.DatabasePassword},
		{"api_password", refs.APIPassword, &out.APIPassword},
		{"keystore_password", refs.KeystorePassword, &out.KeystorePassword},
	}
	for _, s := range steps {
		sec, err := fetchOne(ctx, api, s.key, s.ref, timeout)
		if err != nil {
			return NodeSecrets{}, err
		}
		*s.dst = sec
	}
	if err := check(refs, out); err != nil {
		return NodeSecrets{}, err
	}
	return out, nil
}

// Check applies the node's rules that do not depend on the node's state to the three passwords: the
// database URL's (CheckDatabasePassword), the .api user's (CheckAPIPassword) and the keystore's that hold whether or
// not its keystore is empty (CheckKeystorePassword with false; CheckKeystore adds the strength rule for an empty
// one). A violation is a terminal *Error (exit 5) naming the secret's key, id and the rule, never the value.
func Check(c *config.Config, s NodeSecrets) error {
	return check(c.Secrets, s)
}

func check(refs config.Secrets, s NodeSecrets) error {
	for _, r := range []struct {
		key string
		ref config.SecretRef
		err error
	}{
		{"database_password", refs.DatabasePassword, CheckDatabasePassword(s.DatabasePassword.Reveal())},
		{"api_password", refs.APIPassword, CheckAPIPassword(s.APIPassword.Reveal())},
		{"keystore_password", refs.KeystorePassword, CheckKeystorePassword(s.KeystorePassword.Reveal(), false)},
	} {
		if r.err != nil {
			return &Error{Key: r.key, ID: r.ref.ID, Terminal: true, Err: r.err}
		}
	}
	return nil
}

func fetchOne(ctx context.Context, api API, key string, ref config.SecretRef, timeout time.Duration) (Secret, error) {
	fail := func(terminal bool, err error) (Secret, error) {
		return Secret{}, &Error{Key: key, ID: ref.ID, Terminal: terminal, Err: err}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := api.GetSecretValue(cctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(ref.ID)})
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			return fail(false, fmt.Errorf("GetSecretValue timed out after %s: %w", timeout, err))
		}
		return fail(classify(err))
	}
	if resp.SecretString == nil {
		if len(resp.SecretBinary) > 0 {
			return fail(true, fmt.Errorf("%w: a binary secret; store the value as a string", ErrFormat))
		}
		return fail(true, ErrEmpty)
	}
	value := *resp.SecretString
	if ref.JSONKey == "" && isJSONObject(value) {
		// The whole document (an RDS secret's username, host, password …) is no password, and the node would
		// refuse it at every start: an operator must say which key holds it. Never quote the value.
		return fail(true, fmt.Errorf("%w: the secret holds JSON: set secrets.%s.json_key to the key of the password", ErrFormat, key))
	}
	if ref.JSONKey != "" {
		var fields map[string]any
		if err := json.Unmarshal([]byte(value), &fields); err != nil {
			// Never quote the value or the decoder's message, which may contain part of it.
			return fail(true, fmt.Errorf("%w: json_key %q is set but the secret is not a JSON object", ErrFormat, ref.JSONKey))
		}
		v, ok := fields[ref.JSONKey]
		if !ok {
			return fail(true, fmt.Errorf("%w: the JSON secret has no key %q", ErrFormat, ref.JSONKey))
		}
		s, isString := v.(string)
		if !isString {
			return fail(true, fmt.Errorf("%w: the JSON secret's key %q is not a string", ErrFormat, ref.JSONKey))
		}
		value = s
	}
	if value == "" {
		return fail(true, ErrEmpty)
	}
	return NewSecret(value, aws.ToString(resp.VersionId)), nil
}

// isJSONObject reports whether s is a JSON object (surrounding white space allowed). A password that merely
// starts with "{" is not one.
func isJSONObject(s string) bool {
	var fields map[string]json.RawMessage
	return strings.HasPrefix(strings.TrimSpace(s), "{") && json.Unmarshal([]byte(s), &fields) == nil
}

// classify sorts an AWS error into terminal (an operator must act) or retryable. The SDK has already retried
// what its retryer considers transient.
func classify(err error) (terminal bool, _ error) {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
			"ExpiredTokenException", "DecryptionFailure":
			return true, fmt.Errorf("%w: %s", ErrAccessDenied, apiErr.ErrorMessage())
		case "ResourceNotFoundException":
			return true, fmt.Errorf("%w: %s", ErrMissing, apiErr.ErrorMessage())
		case "InvalidRequestException", "InvalidParameterException":
			return true, fmt.Errorf("%s: %s", apiErr.ErrorCode(), apiErr.ErrorMessage())
		}
	}
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusForbidden {
		return true, fmt.Errorf("%w: %v", ErrAccessDenied, err)
	}
	return false, err
}
