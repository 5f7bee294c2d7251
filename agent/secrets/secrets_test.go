package secrets

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

func testAWSConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
}

// fakeSecretsManager answers GetSecretValue with the scripted responses in order (the last one repeats).
type scripted struct {
	status int
	body   string
}

func fakeSecretsManager(t *testing.T, script ...scripted) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("X-Amz-Target"); got != "secretsmanager.GetSecretValue" {
			t.Errorf("unexpected call %q", got)
		}
		n := int(calls.Add(1)) - 1
		s := script[min(n, len(script)-1)]
		if s.status == 0 { // never answer
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(s.status)
		_, _ = w.Write([]byte(s.body))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: frees a handler that never answers
	return srv, &calls
}

const okBody = `{"ARN":"arn:aws:secretsmanager:us-east-1:1:secret:s","Name":"s","VersionId":"v1","SecretString":"keystore-Password-0123456789"}`

func TestFetchRetriesOnlyWhatIsWorthRetrying(t *testing.T) {
	cases := []struct {
		name      string
		script    []scripted
		wantCalls int32
		wantErr   error
		terminal  bool
	}{
		{"ServerErrorThenSuccess", []scripted{{500, `{"__type":"InternalServiceError","message":"boom"}`}, {500, `{"__type":"InternalServiceError"}`}, {200, okBody}}, 3, nil, false},
		{"ThrottledThenSuccess", []scripted{{400, `{"__type":"ThrottlingException","message":"Rate exceeded"}`}, {200, okBody}}, 2, nil, false},
		{"AccessDeniedNotRetried", []scripted{{400, `{"__type":"AccessDeniedException","message":"not authorized"}`}}, 1, ErrAccessDenied, true},
		{"NotFoundNotRetried", []scripted{{400, `{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}`}}, 1, ErrMissing, true},
		{"KMSDecryptDenied", []scripted{{400, `{"__type":"DecryptionFailure","message":"kms"}`}}, 1, ErrAccessDenied, true},
		{"PersistentServerErrorGivesUp", []scripted{{503, `{"__type":"ServiceUnavailable"}`}}, 3, nil, false},
		{"EmptySecret", []scripted{{200, `{"Name":"s","SecretString":""}`}}, 1, ErrEmpty, true},
		{"BinarySecret", []scripted{{200, `{"Name":"s","SecretBinary":"AAEC"}`}}, 1, ErrFormat, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, calls := fakeSecretsManager(t, tc.script...)
			api := NewClient(testAWSConfig(), srv.URL, 3, 5*time.Second)
			sec, err := fetchOne(context.Background(), api, "keystore_password", config.SecretRef{ID: "WalletSecret"}, 20*time.Second)
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("%d calls, want %d", got, tc.wantCalls)
			}
			persistent := tc.name == "PersistentServerErrorGivesUp"
			if tc.wantErr == nil && !persistent {
				if err != nil || sec.Reveal() != "keystore-Password-0123456789" || sec.VersionID != "v1" {
					t.Fatalf("got %v, %v", sec, err)
				}
				return
			}
			var se *Error
			if !errors.As(err, &se) || se.Terminal != tc.terminal || se.Key != "keystore_password" || se.ID != "WalletSecret" {
				t.Fatalf("got %#v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("%v does not wrap %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), `secret keystore_password (id "WalletSecret")`) {
				t.Errorf("message does not name the secret: %v", err)
			}
		})
	}
}

func TestFetchTimesOutWithTheBound(t *testing.T) {
	srv, _ := fakeSecretsManager(t, scripted{status: 0})
	api := NewClient(testAWSConfig(), srv.URL, 3, 5*time.Second)
	_, err := fetchOne(context.Background(), api, "api_password", config.SecretRef{ID: "ApiSecret"}, 300*time.Millisecond)
	var se *Error
	if !errors.As(err, &se) || se.Terminal || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Fatalf("got %v", err)
	}
}

// TestFetchJSONKey: json_key picks a string field of a JSON secret; a JSON object fetched without json_key is
// refused (terminal) instead of becoming the password whole, and a plain value that only starts like JSON is
// taken as it is.
func TestFetchJSONKey(t *testing.T) {
	const pass = "db-Password-0123456789"
	const holdsJSON = "the secret holds JSON: set secrets.database_password.json_key"
	cases := []struct {
		name, body, key string
		want            string // the password; "" when refused
		says            string // in the refusal
	}{
		{"Found", `{"SecretString":"{\"username\":\"cl\",\"password\":\"` + pass + `\"}"}`, "password", pass, ""},
		{"MissingKey", `{"SecretString":"{\"username\":\"cl\"}"}`, "password", "", "no key"},
		{"NotJSON", `{"SecretString":"` + pass + `"}`, "password", "", "not a JSON object"},
		{"NotString", `{"SecretString":"{\"password\":12345678901234567}"}`, "password", "", "not a string"},
		{"JSONWithoutKey", `{"SecretString":"{\"username\":\"cl\",\"password\":\"` + pass + `\"}"}`, "", "", holdsJSON},
		{"JSONWithSpaceWithoutKey", `{"SecretString":" \n{\"password\": \"` + pass + `\"}\n"}`, "", "", holdsJSON},
		{"PlainWithoutKey", `{"SecretString":"` + pass + `"}`, "", pass, ""},
		{"BraceWithoutKey", `{"SecretString":"{` + pass + `"}`, "", "{" + pass, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := fakeSecretsManager(t, scripted{200, tc.body})
			api := NewClient(testAWSConfig(), srv.URL, 1, time.Second)
			sec, err := fetchOne(context.Background(), api, "database_password", config.SecretRef{ID: "DBSecret", JSONKey: tc.key}, 5*time.Second)
			if tc.want != "" {
				if err != nil || sec.Reveal() != tc.want {
					t.Fatalf("got %v", err)
				}
				return
			}
			if !errors.Is(err, ErrFormat) || strings.Contains(err.Error(), "db-Password") {
				t.Fatalf("got %v", err)
			}
			var se *Error
			if !errors.As(err, &se) || !se.Terminal || se.ExitCode() != 5 {
				t.Errorf("not terminal: %v", err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
		})
	}
}

// TestFetchFromMoto runs the real client against moto's Secrets Manager.
func TestFetchFromMoto(t *testing.T) {
	moto := testenv.MotoT(t)
	ctx := context.Background()
	api := NewClient(testAWSConfig(), moto.URL, 3, 5*time.Second)
	create := func(name, value string) {
		if _, err := api.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	create("DBSecret", `{"username":"chainlink","password":"`+strings.ReplaceAll(testDBPassword, `"`, `\"`)[:0]+`db-Password-0123456789"}`)
	create("ApiSecret", testAPIPassword)
	create("WalletSecret", testKeystore)
	refs := config.Secrets{
		DatabasePassword: config.SecretRef{ID: "DBSecret", JSONKey: "password"},
		APIPassword:      config.SecretRef{ID: "ApiSecret"},
		KeystorePassword: config.SecretRef{ID: "WalletSecret"},
	}
	got, err := Fetch(ctx, api, refs, "ops@example.com", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got.DatabasePassword.Reveal() != "db-Password-0123456789" || got.APIPassword.Reveal() != testAPIPassword ||
		got.KeystorePassword.Reveal() != testKeystore || got.APIPassword.VersionID == "" {
		t.Errorf("unexpected values or version ids")
	}
	refs.APIPassword.ID = "NoSuchSecret"
	_, err = Fetch(ctx, api, refs, "ops@example.com", 10*time.Second)
	var se *Error
	if !errors.As(err, &se) || !se.Terminal || !errors.Is(err, ErrMissing) || se.Key != "api_password" {
		t.Fatalf("missing secret: got %v", err)
	}
}
