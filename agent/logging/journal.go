package logging

import (
	"fmt"
	"os"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// Under systemd, stdout is a stream to journald, which stores every line at PRIORITY=6 unless the line starts
// with a kernel-style "<N>" level prefix (sd-daemon(3); SyslogLevelPrefix= is on by default). The logger adds
// that prefix when — and only when — stdout is the journal, so `journalctl -u cl-agent -p warning` shows the
// warnings and errors, and a terminal or a test sees plain JSON lines.

// journalPriority maps a zap level to a syslog priority.
func journalPriority(l zapcore.Level) int {
	switch {
	case l <= zapcore.DebugLevel:
		return 7 // debug
	case l == zapcore.InfoLevel:
		return 6 // info
	case l == zapcore.WarnLevel:
		return 4 // warning
	case l == zapcore.ErrorLevel:
		return 3 // err
	default:
		return 2 // crit: dpanic, panic, fatal
	}
}

// StdoutIsJournal reports whether this process's stdout is connected to journald: systemd sets $JOURNAL_STREAM
// to the device and inode of that stream, and a child that redirected its stdout keeps the variable but not the
// stream, hence the comparison.
func StdoutIsJournal() bool {
	want := os.Getenv("JOURNAL_STREAM")
	if want == "" {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(os.Stdout.Fd()), &st); err != nil {
		return false
	}
	return want == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// priorityEncoder prefixes each encoded entry with its journal priority.
type priorityEncoder struct{ zapcore.Encoder }

func (e priorityEncoder) Clone() zapcore.Encoder { return priorityEncoder{e.Encoder.Clone()} }

func (e priorityEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	line, err := e.Encoder.EncodeEntry(ent, fields)
	if err != nil {
		return nil, err
	}
	out := bufferPool.Get()
	out.AppendByte('<')
	out.AppendInt(int64(journalPriority(ent.Level)))
	out.AppendByte('>')
	_, _ = out.Write(line.Bytes())
	line.Free()
	return out, nil
}

var bufferPool = buffer.NewPool()
