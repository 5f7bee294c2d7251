package main

import (
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Lifecycle events, one log line each; tests wait for these messages.
const (
	evStarting     = "starting"
	evRefusing     = "refusing to start"
	evWaitingLease = "waiting for lease"
	evLeaseAcq     = "lease acquired"
	evListening    = "listening"
	evReady        = "ready"
	evNeverReady   = "never becoming ready"
	evLeaseLost    = "lease lost"
	evStopping     = "stopping"
	evStopped      = "stopped"
	evCrash        = "crash injected"
	evExitAfter    = "exit-after elapsed"
)

// newLogger writes one line per entry to w: JSON like the node's ({"level","ts","logger","msg",...}) or, when
// JSONConsole is off, the node's human console format.
func newLogger(w io.Writer, json bool, level zapcore.Level) *zap.Logger {
	enc := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		NameKey:        "logger",
		CallerKey:      zapcore.OmitKey,
		MessageKey:     "msg",
		StacktraceKey:  zapcore.OmitKey,
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     zapcore.TimeEncoderOfLayout(time.RFC3339Nano),
		EncodeDuration: zapcore.StringDurationEncoder,
	}
	var encoder zapcore.Encoder
	if json {
		encoder = zapcore.NewJSONEncoder(enc)
	} else {
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		encoder = zapcore.NewConsoleEncoder(enc)
	}
	core := zapcore.NewCore(encoder, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core).Named("standin")
}
