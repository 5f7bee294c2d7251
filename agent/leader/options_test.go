package leader

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestNew(t *testing.T) {
	t.Parallel()
	cfg, err := pgx.ParseConfig("postgres://agent@127.0.0.1:5432/chainlink")
	if err != nil {
		t.Fatal(err)
	}
	valid := func() Options {
		return Options{ConnConfig: cfg, Key: LockKey(0, "chainlink"), InstanceID: "i-0123456789abcdef0"}
	}
	for _, tc := range []struct {
		name   string
		change func(*Options)
	}{
		{"NoConnConfig", func(o *Options) { o.ConnConfig = nil }},
		{"NoInstanceID", func(o *Options) { o.InstanceID = "" }},
		{"InstanceIDTooLong", func(o *Options) { o.InstanceID = "i-" + strings.Repeat("x", 60) }},
		{"NoKey", func(o *Options) { o.Key = 0 }},
		{"NodeLockKey", func(o *Options) { o.Key = 1027321974924625846 }},
		{"NegativeDuration", func(o *Options) { o.RetryInterval = -time.Second }},
		{"PingTimeoutOverInterval", func(o *Options) { o.PingTimeout = 2 * time.Second }},
		{"FenceAfterTooShort", func(o *Options) { o.FenceAfter = 2 * time.Second }},
		{"DeadPeerBelowFenceAfter", func(o *Options) { o.DeadPeerTimeout = 3 * time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.change(&o)
			if _, err := New(o); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("New = %v, want ErrInvalidOptions", err)
			}
		})
	}
	e, err := New(valid())
	if err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
	if e.o.PingInterval != time.Second || e.o.PingTimeout != 800*time.Millisecond || e.o.FenceAfter != 4*time.Second ||
		e.o.DeadPeerTimeout != 10*time.Second {
		t.Fatalf("defaults: %+v", e.o)
	}
	if cfg.RuntimeParams["application_name"] != "" || e.lockConf.RuntimeParams["application_name"] != "cl-agent/i-0123456789abcdef0" {
		t.Fatalf("application_name: base %q, session %q", cfg.RuntimeParams["application_name"], e.lockConf.RuntimeParams["application_name"])
	}
	if got := e.lockConf.RuntimeParams["tcp_user_timeout"]; got != strconv.Itoa(10000) {
		t.Fatalf("tcp_user_timeout = %q", got)
	}
}
