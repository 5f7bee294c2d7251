package testenv

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
)

// awkwardPassword holds every character that broke hand-built database URLs.
const awkwardPassword = `pa' @:/?#%ss\word-0123456789`

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// requireGone asserts that the process group led by pid has no member left.
func requireGone(t *testing.T, what string, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("%s pid %d still exists after Stop (kill 0: %v)", what, pid, err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("%s process group %d still has members after Stop (kill 0: %v)", what, pid, err)
	}
}

// verifyFullURL is a DSN that checks the server certificate against the cluster's CA and the host name.
func verifyFullURL(p *Postgres, host, user, password, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     net.JoinHostPort(host, strconv.Itoa(p.Port)),
		Path:     "/" + db,
		RawQuery: url.Values{"sslmode": {"verify-full"}, "sslrootcert": {p.CAFile}}.Encode(),
	}
	return u.String()
}

func connect(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	p := PostgresT(t)

	t.Run("SuperuserOverVerifiedTLS", func(t *testing.T) {
		// BridgeHost is checked from a container (TestPostgresFromContainer): from the host, docker's masquerade
		// rule rewrites the source of a connection to the bridge address, so pg_hba rightly refuses it.
		for _, host := range []string{p.Host, "localhost"} {
			conn := connect(t, ctx, verifyFullURL(p, host, "postgres", p.Password, "postgres"))
			var ssl bool
			if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
				t.Fatal(err)
			}
			if !ssl {
				t.Errorf("connection via %s is not encrypted", host)
			}
		}
		connect(t, ctx, p.URL("postgres")) // the documented DSN works as is
	})

	t.Run("WrongPasswordRefused", func(t *testing.T) {
		_, err := pgx.Connect(ctx, verifyFullURL(p, p.Host, "postgres", "not-"+p.Password, "postgres"))
		if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
			t.Fatalf("connect with a wrong password: %v, want password authentication failed", err)
		}
	})

	t.Run("CreateDatabaseWithAwkwardPassword", func(t *testing.T) {
		if err := p.CreateDatabase(ctx, "node db", "node-user", awkwardPassword); err != nil {
			t.Fatal(err)
		}
		conn := connect(t, ctx, verifyFullURL(p, p.Host, "node-user", awkwardPassword, "node db"))
		var user, db, owner string
		err := conn.QueryRow(ctx, `SELECT current_user, current_database(),
			(SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database())`).Scan(&user, &db, &owner)
		if err != nil {
			t.Fatal(err)
		}
		if user != "node-user" || db != "node db" || owner != "node-user" {
			t.Errorf("logged in as %q to %q owned by %q", user, db, owner)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE owned (id int)"); err != nil {
			t.Errorf("owner cannot create a table: %v", err)
		}
	})

	t.Run("FailedCreateKeepsPasswordOutOfLog", func(t *testing.T) {
		const secret = `another' secret@:/?#%-0123456789`
		if err := p.CreateDatabase(ctx, "dup", "dup-user", secret); err != nil {
			t.Fatal(err)
		}
		err := p.CreateDatabase(ctx, "dup", "dup-user", secret)
		if err == nil {
			t.Fatal("creating an existing database succeeded")
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error carries the password: %v", err)
		}
		log, readErr := os.ReadFile(p.logPath())
		if readErr != nil {
			t.Fatal(readErr)
		}
		if !strings.Contains(string(log), `database "dup" already exists`) {
			t.Errorf("log lacks the failure; wrong log file?\n%s", log)
		}
		if strings.Contains(string(log), "secret@") || strings.Contains(string(log), p.Password) {
			t.Errorf("postgres log holds a password:\n%s", log)
		}
	})

	t.Run("RestartKeepsPortAndData", func(t *testing.T) {
		conn := connect(t, ctx, p.URL("postgres"))
		if _, err := conn.Exec(ctx, "CREATE TABLE survives (v text); INSERT INTO survives VALUES ('before restart')"); err != nil {
			t.Fatal(err)
		}
		port, oldPid := p.Port, p.proc.Pid()
		if err := p.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if p.Port != port {
			t.Errorf("port changed across restart: %d -> %d", port, p.Port)
		}
		requireGone(t, "old postmaster", oldPid)
		if err := conn.Ping(ctx); err == nil {
			t.Error("a connection from before the restart still works")
		}
		var v string
		if err := connect(t, ctx, p.URL("postgres")).QueryRow(ctx, "SELECT v FROM survives").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != "before restart" {
			t.Errorf("after restart: %q", v)
		}
	})

	t.Run("StopRemovesProcessesAndDir", func(t *testing.T) {
		conn := connect(t, ctx, p.URL("postgres")) // a backend that must go too
		_ = conn
		pid := p.proc.Pid()
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		requireGone(t, "postmaster", pid)
		if _, err := os.Stat(p.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cluster dir %s still there: %v", p.Dir, err)
		}
		if err := p.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
}

func TestPostgresInCallersTempDir(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	p, err := StartPostgres(ctx, t.TempDir()) // parents are 0700 root: made traversable for the postgres user
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	connect(t, ctx, verifyFullURL(p, p.Host, "postgres", p.Password, "postgres"))
	fi, err := os.Stat(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o004 == 0 {
		t.Errorf("CAFile mode %s: not world-readable", fi.Mode().Perm())
	}
}

func TestMoto(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	m := MotoT(t)
	sm := secretsmanager.New(secretsmanager.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(m.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("DBSecret"), SecretString: aws.String(awkwardPassword),
	}); err != nil {
		t.Fatal(err)
	}
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("DBSecret")})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(out.SecretString); got != awkwardPassword {
		t.Errorf("secret read back as %q", got)
	}

	pid := m.proc.Pid()
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	requireGone(t, "moto_server", pid)
}

func TestIMDS(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	id := Identity{InstanceID: "i-0fedcba9876543210", Region: "eu-west-1", AZ: "eu-west-1b", PrivateIP: "10.0.2.10"}
	m := IMDST(t, id)

	t.Run("TokenRequired", func(t *testing.T) {
		resp, err := http.Get(m.URL + "/latest/meta-data/instance-id")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("IMDSv1 GET answered %d, want 401", resp.StatusCode)
		}
	})

	t.Run("IdentityServed", func(t *testing.T) {
		client := imds.New(imds.Options{Endpoint: m.URL})
		for path, want := range map[string]string{
			"instance-id":                 id.InstanceID,
			"local-ipv4":                  id.PrivateIP,
			"placement/region":            id.Region,
			"placement/availability-zone": id.AZ,
		} {
			out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			b, err := io.ReadAll(out.Content)
			out.Content.Close()
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != want {
				t.Errorf("%s = %q, want %q", path, b, want)
			}
		}
		doc, err := client.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
		if err != nil {
			t.Fatal(err)
		}
		got := Identity{doc.InstanceID, doc.Region, doc.AvailabilityZone, doc.PrivateIP}
		if got != id {
			t.Errorf("identity document says %+v, want %+v", got, id)
		}
	})

	t.Run("Stop", func(t *testing.T) {
		pid := m.proc.Pid()
		if err := m.Stop(); err != nil {
			t.Fatal(err)
		}
		requireGone(t, "ec2-metadata-mock", pid)
	})
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := RegistryT(t)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
		t.Errorf("GET /v2/: %d, api version %q", resp.StatusCode, resp.Header.Get("Docker-Distribution-Api-Version"))
	}
	pid := r.proc.Pid()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	requireGone(t, "registry", pid)
}

func TestDocker(t *testing.T) {
	t.Parallel()
	DockerT(t)
	b, err := defaultBridge(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if !b.Subnet.Contains(b.Gateway) {
		t.Errorf("bridge gateway %s outside subnet %s", b.Gateway, b.Subnet)
	}
}

func TestStartFailureCarriesLogTail(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := t.TempDir()
	// A second registry on the port of a first must not pass for ready: the probe would be answered by the first.
	r := RegistryT(t)
	_, port, _ := net.SplitHostPort(r.Addr)
	portNum, _ := strconv.Atoi(port)
	bin, err := toolPath(ctx, "registry")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/registry.yml", []byte(RegistryConfig(dir+"/storage", r.Addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := startProc("registry", dir+"/registry.log", exec.Command(bin, "serve", dir+"/registry.yml"))
	if err != nil {
		t.Fatal(err)
	}
	err = p.waitReady(ctx, portNum, httpProbe(http.MethodGet, "http://"+r.Addr+"/v2/", nil, http.StatusOK))
	if err == nil {
		t.Fatal("a registry that could not bind its port was taken for ready")
	}
	if !errors.Is(err, errAddrInUse) || !strings.Contains(err.Error(), "registry.log (tail)") {
		t.Errorf("error %q: want errAddrInUse and the log tail", err)
	}
	requireGone(t, "failed registry", p.Pid())
}

func TestListensOn(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		pid, port int
		want      bool
	}{
		{os.Getpid(), port, true},
		{os.Getpid(), port + 1, false},
		{1, port, false},
	} {
		got, err := listensOn(tc.pid, tc.port)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("listensOn(%d, %d) = %v, want %v", tc.pid, tc.port, got, tc.want)
		}
	}
}

func TestQuoteLiteral(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           `E'plain'`,
		`it's`:            `E'it''s'`,
		`back\slash`:      `E'back\\slash'`,
		`' @:/?#%`:        `E''' @:/?#%'`,
		`\'; DROP ROLE x`: `E'\\''; DROP ROLE x'`,
	} {
		if got := quoteLiteral(in); got != want {
			t.Errorf("quoteLiteral(%q) = %s, want %s", in, got, want)
		}
	}
}
