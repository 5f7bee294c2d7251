package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// pgBin holds the PostgreSQL 15 server binaries (Debian's postgresql-15).
const pgBin = "/usr/lib/postgresql/15/bin"

const (
	initdbTimeout = 60 * time.Second
	maxSocketPath = 107 // sun_path without its NUL
)

// Postgres is a throwaway PostgreSQL 15 cluster: its postmaster is a child of this process (killed if this process
// dies), listening on 127.0.0.1 and on the docker bridge gateway, TLS on (CAFile signs the server certificate for
// 127.0.0.1, BridgeHost and localhost), scram-sha-256 for every TCP connection, trust only on its unix socket (in Dir,
// mode 0700). Durability is off (fsync, synchronous_commit, full_page_writes): a crash loses data, a Restart does not.
type Postgres struct {
	Host       string // "127.0.0.1"
	BridgeHost string // docker0 gateway IP (e.g. 172.17.0.1): containers on the default bridge reach the cluster here
	Port       int
	Password   string // superuser "postgres" password (scram-sha-256; no trust auth over TCP)
	CAFile     string // PEM of the CA that signed the server certificate (ssl=on); world-readable
	Dir        string // the cluster: data/ (PGDATA), postgres.log, ca.crt, the socket; removed by Stop

	uid, gid  int
	socketDir string // Dir, or a short temp dir when Dir is too long for a socket path

	mu   sync.Mutex // guards proc across Restart and Stop
	proc *proc

	opts pgOptions // extra listen addresses (ExtraListen)
}

// StartPostgres creates a cluster in dir and starts it on a free port. dir is made if missing, then owned by the
// postgres user, and Stop removes it; "" means a fresh temporary directory, never the working directory. Parents
// inside the temp dir gain o+x so that user can reach it. It needs the docker engine (started if it is
// not running) to learn the bridge gateway. The superuser password is random and reaches initdb through a pipe.
// Options add listen addresses (ExtraListen).
func StartPostgres(ctx context.Context, dir string, opts ...PostgresOption) (*Postgres, error) {
	o, err := newPGOptions(opts)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		// Never the working directory: Stop removes the cluster's directory.
		if dir, err = os.MkdirTemp("", "cl-agent-testenv-pg-"); err != nil {
			return nil, err
		}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	br, err := defaultBridge(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres needs the docker bridge gateway: %w", err)
	}
	uid, gid, err := postgresUser()
	if err != nil {
		return nil, err
	}
	p := &Postgres{
		Host:       "127.0.0.1",
		BridgeHost: br.Gateway.String(),
		Password:   RandomHex(24),
		CAFile:     filepath.Join(dir, "ca.crt"),
		Dir:        dir,
		uid:        uid,
		gid:        gid,
		socketDir:  dir,
		opts:       o,
	}
	if err := p.prepareDir(); err != nil {
		return nil, err
	}
	proc, err := p.create(ctx, br.Subnet.String())
	if err != nil {
		_ = p.removeDirs() // as Stop would; the error carries the logs that matter
		return nil, err
	}
	p.proc = proc
	return p, nil
}

// create initialises and configures the cluster, then starts it on a free port.
func (p *Postgres) create(ctx context.Context, bridgeSubnet string) (*proc, error) {
	if err := p.initdb(ctx); err != nil {
		return nil, err
	}
	if err := p.configure(bridgeSubnet); err != nil {
		return nil, err
	}
	return withFreePort(func(port int) (*proc, error) {
		p.Port = port
		return p.start(ctx)
	})
}

// URL is a superuser DSN for database db over 127.0.0.1 with sslmode=require (encrypted, server not verified; add
// sslrootcert=CAFile and sslmode=verify-full to verify).
func (p *Postgres) URL(db string) string { return p.RoleURL(db, "postgres", p.Password) }

// RoleURL is URL for a login role of the cluster (one CreateDatabase made, say) instead of the superuser: user and
// password percent-encoded.
func (p *Postgres) RoleURL(db, user, password string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     net.JoinHostPort(p.Host, strconv.Itoa(p.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=require",
	}
	return u.String()
}

// Restart stops the cluster the fast way (clients disconnected, checkpoint) and starts it again on the same port
// with the same data, as a database restart or failover looks to clients.
func (p *Postgres) Restart(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return fmt.Errorf("restart postgres: stopped")
	}
	if err := p.proc.stop(syscall.SIGINT, stopGrace); err != nil { // SIGINT: fast shutdown
		return fmt.Errorf("restart postgres: %w", err)
	}
	proc, err := p.start(ctx)
	if err != nil {
		p.proc = nil
		return fmt.Errorf("restart postgres: %w", err)
	}
	p.proc = proc
	return nil
}

// Stop shuts the cluster down the immediate way (no checkpoint), kills what is left of its process group and removes
// Dir. Safe to call more than once.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	if p.proc != nil {
		err = p.proc.stop(syscall.SIGQUIT, stopGrace) // SIGQUIT: immediate shutdown
	}
	if rmErr := p.removeDirs(); err == nil {
		err = rmErr
	}
	return err
}

func (p *Postgres) dataDir() string { return filepath.Join(p.Dir, "data") }
func (p *Postgres) logPath() string { return filepath.Join(p.Dir, "postgres.log") }

func (p *Postgres) removeDirs() error {
	err := os.RemoveAll(p.Dir)
	if p.socketDir != p.Dir {
		_ = os.RemoveAll(p.socketDir)
	}
	return err
}

// prepareDir makes Dir owned by postgres and reachable by it, and picks the socket directory.
func (p *Postgres) prepareDir() error {
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return fmt.Errorf("postgres dir: %w", err)
	}
	if err := os.Chmod(p.Dir, 0o755); err != nil { // CAFile must be readable by anyone (a container's uid)
		return err
	}
	if err := os.Chown(p.Dir, p.uid, p.gid); err != nil {
		return fmt.Errorf("chown postgres dir: %w", err)
	}
	if err := makeTraversable(filepath.Dir(p.Dir)); err != nil {
		return err
	}
	if len(filepath.Join(p.Dir, ".s.PGSQL.65535")) > maxSocketPath {
		sd, err := os.MkdirTemp("", "cl-agent-testenv-pgsock-")
		if err != nil {
			return err
		}
		if err := os.Chown(sd, p.uid, p.gid); err != nil {
			os.RemoveAll(sd)
			return err
		}
		p.socketDir = sd
	}
	return nil
}

// makeTraversable gives other users search (x) permission on dir and its parents up to the temp dir, so the
// postgres user can reach a cluster under t.TempDir() (whose parents are 0700). Outside the temp dir it only checks.
func makeTraversable(dir string) error {
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		tmp = os.TempDir()
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			inTemp := strings.HasPrefix(d, tmp+string(filepath.Separator)) || strings.HasPrefix(d, os.TempDir()+string(filepath.Separator))
			if !inTemp {
				return fmt.Errorf("postgres user cannot reach the cluster: %s is mode %s", d, fi.Mode().Perm())
			}
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return err
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func postgresUser() (uid, gid int, err error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0, 0, fmt.Errorf("the postgres user (initdb refuses root): %w", err)
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, err
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}

// asPostgres prepares a command of the PostgreSQL bin dir to run as the postgres user with a small environment.
func (p *Postgres) asPostgres(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(pgBin, name), args...)
	cmd.Dir = p.Dir
	cmd.Env = []string{"PATH=" + pgBin + ":/usr/bin:/bin", "LC_ALL=C", "HOME=" + p.Dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.gid)}}
	return cmd
}

// initdb creates the cluster. The password goes through a pipe read as /dev/stdin, so it touches no disk and no
// argument list; the pipe is handed to postgres so it may reopen it through /proc.
func (p *Postgres) initdb(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, initdbTimeout)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	defer w.Close()
	if err := r.Chown(p.uid, p.gid); err != nil {
		return fmt.Errorf("chown password pipe: %w", err)
	}
	logPath := filepath.Join(p.Dir, "initdb.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := p.asPostgres(ctx, "initdb", "-D", p.dataDir(), "-U", "postgres", "--pwfile=/dev/stdin",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, logFile, logFile
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start initdb: %w", err)
	}
	_, werr := w.Write([]byte(p.Password + "\n")) // far below the pipe buffer: never blocks
	w.Close()
	if err := cmd.Wait(); err != nil || werr != nil {
		return fmt.Errorf("initdb %s (bound %s): %v %v\n--- %s (tail) ---\n%s", p.dataDir(), initdbTimeout, err, werr, logPath, fileTail(logPath))
	}
	return nil
}

// configure writes TLS material, postgresql.conf additions and pg_hba.conf.
func (p *Postgres) configure(bridgeSubnet string) error {
	ips := append([]net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(p.BridgeHost)}, p.opts.certIPs()...)
	tlsFiles, err := newServerTLS(ips)
	if err != nil {
		return err
	}
	data := p.dataDir()
	for _, f := range []struct {
		path string
		b    []byte
		perm os.FileMode
	}{
		{p.CAFile, tlsFiles.caPEM, 0o644},
		{filepath.Join(data, "server.crt"), tlsFiles.certPEM, 0o644},
		{filepath.Join(data, "server.key"), tlsFiles.keyPEM, 0o600},
		{filepath.Join(data, "pg_hba.conf"), []byte(pgHBA(bridgeSubnet) + p.opts.hbaLines()), 0o600},
	} {
		if err := writeOwned(f.path, f.b, f.perm, p.uid, p.gid); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	conf, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer conf.Close()
	_, err = conf.WriteString(p.conf())
	return err
}

func (p *Postgres) conf() string {
	return fmt.Sprintf(`
# cl-agent testenv
listen_addresses = '127.0.0.1,%s%s'
unix_socket_directories = '%s'
unix_socket_permissions = 0700
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = 'scram-sha-256'
standard_conforming_strings = on
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 200
logging_collector = off
log_min_error_statement = panic  # a failed CREATE ROLE ... PASSWORD must not land in the log
log_line_prefix = '%%m [%%p] %%q%%u@%%d '
`, p.BridgeHost, p.opts.listenAddrs(), p.socketDir)
}

func pgHBA(bridgeSubnet string) string {
	hba := fmt.Sprintf(`# cl-agent testenv: trust on the unix socket only; scram-sha-256 over TCP (loopback and the docker bridge)
local all all                trust
host  all all 127.0.0.1/32   scram-sha-256
host  all all %-14s scram-sha-256
`, bridgeSubnet)
	// A connection from this machine to BridgeHost leaves with one of the machine's own addresses as its source
	// (Docker's NAT rules), so the agent on the host reaches the cluster the same way its containers do.
	for _, a := range ownIPv4() {
		hba += fmt.Sprintf("host  all all %-14s scram-sha-256\n", a+"/32")
	}
	return hba
}

// ownIPv4 lists this machine's non-loopback IPv4 addresses.
func ownIPv4() []string {
	addrs, _ := net.InterfaceAddrs()
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

// start runs the postmaster on p.Port and waits until it reports ready and listens on every address.
func (p *Postgres) start(ctx context.Context) (*proc, error) {
	logOffset := fileSize(p.logPath())
	cmd := p.asPostgres(context.Background(), "postgres", "-D", p.dataDir(), "-p", strconv.Itoa(p.Port))
	proc, err := startProc("postgres", p.logPath(), cmd)
	if err != nil {
		return nil, err
	}
	if err := proc.waitReady(ctx, p.Port, p.readyProbe); err != nil {
		return nil, err
	}
	// The postmaster carries on when some listen addresses fail to bind, as long as one works.
	if logSince(p.logPath(), logOffset, "could not create listen socket") {
		return nil, proc.startFailure(fmt.Errorf("could not bind every listen address on port %d", p.Port))
	}
	return proc, nil
}

// readyProbe reads the postmaster's status line from postmaster.pid, which is what pg_ctl -w waits for.
func (p *Postgres) readyProbe(context.Context) error {
	b, err := os.ReadFile(filepath.Join(p.dataDir(), "postmaster.pid"))
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	const statusLine = 7 // PM_STATUS line, 0-based
	if len(lines) <= statusLine || strings.TrimSpace(lines[statusLine]) != "ready" {
		return fmt.Errorf("postmaster not ready yet")
	}
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince reports whether the log, from offset on, contains s.
func logSince(path string, offset int64, s string) bool {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return false
	}
	return strings.Contains(string(b[offset:]), s)
}
