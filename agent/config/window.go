package config

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// windowRE is "HH:MM-HH:MM", 24-hour, each time from 00:00 to 23:59.
var windowRE = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$`)

// Window is a daily range of time in UTC, written "HH:MM-HH:MM" (24-hour): from the start minute, inclusive, to
// the end minute, exclusive. The end may be before the start, so that the range wraps midnight ("22:00-02:00" is
// 22:00 to 01:59). The zero Window, written "" (the default), is any time. A range whose start equals its end is
// refused rather than read as "always" or "never".
type Window struct {
	start, end int // minutes after 00:00 UTC
	set        bool
}

// ParseWindow parses "HH:MM-HH:MM" (UTC, 24-hour); "" is the zero Window (any time). The error wraps ErrInvalid
// and says the rule.
func ParseWindow(s string) (Window, error) {
	if s == "" {
		return Window{}, nil
	}
	m := windowRE.FindStringSubmatch(s)
	if m == nil {
		return Window{}, detail(ErrInvalid,
			"must be HH:MM-HH:MM in UTC, 24-hour, such as 22:00-02:00 (the end may be before the start, wrapping midnight)")
	}
	w := Window{start: minutes(m[1], m[2]), end: minutes(m[3], m[4]), set: true}
	if w.start == w.end {
		return Window{}, detail(ErrInvalid, "the start equals the end: an empty window (leave it empty for any time)")
	}
	return w, nil
}

// minutes is HH:MM as minutes after midnight; the digits were matched by windowRE.
func minutes(hh, mm string) int {
	h, _ := strconv.Atoi(hh)
	m, _ := strconv.Atoi(mm)
	return h*60 + m
}

// UnmarshalYAML decodes the "HH:MM-HH:MM" string; a null or empty value is the zero Window.
func (w *Window) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		*w = Window{}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return detail(ErrInvalid, "must be a string HH:MM-HH:MM")
	}
	parsed, err := ParseWindow(n.Value)
	if err != nil {
		return err
	}
	*w = parsed
	return nil
}

// IsZero reports whether w is the zero Window: any time.
func (w Window) IsZero() bool { return !w.set }

// Contains reports whether t, taken in UTC, falls in w: at or after the start minute and before the end minute
// (seconds do not count, so 01:59:59 is inside "22:00-02:00" and 02:00:00 is not). The zero Window contains every t.
func (w Window) Contains(t time.Time) bool {
	if !w.set {
		return true
	}
	t = t.UTC()
	m := t.Hour()*60 + t.Minute()
	if w.start < w.end {
		return w.start <= m && m < w.end
	}
	return m >= w.start || m < w.end // wraps midnight
}

// String is w as written in the file ("22:00-02:00"), "" for the zero Window.
func (w Window) String() string {
	if !w.set {
		return ""
	}
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.start/60, w.start%60, w.end/60, w.end%60)
}
