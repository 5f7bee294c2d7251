package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUpgradeAccepted(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		image string
		want  func(Image) bool
	}{
		"ManualByDefault":        {"{}", func(im Image) bool { return im.Upgrade == UpgradeManual }},
		"ManualWithPinnedTag":    {"{upgrade: manual, tag: 2.19.0}", func(im Image) bool { return im.Tag == "2.19.0" }},
		"ManualWithPollSet":      {"{upgrade: manual, poll_interval: 5m}", func(im Image) bool { return im.PollInterval == 5*time.Minute }},
		"Auto":                   {"{upgrade: auto}", func(im Image) bool { return im.Upgrade == UpgradeAuto && im.UpgradeWindow.IsZero() }},
		"AutoWithinMajor":        {"{upgrade: auto, major: 2}", func(im Image) bool { return im.Major == 2 }},
		"AutoWithWindow":         {"{upgrade: auto, upgrade_window: 02:00-04:30}", func(im Image) bool { return im.UpgradeWindow.String() == "02:00-04:30" }},
		"AutoWithWrappingWindow": {"{upgrade: auto, upgrade_window: '22:00-02:00'}", func(im Image) bool { return im.UpgradeWindow.String() == "22:00-02:00" }},
		"AutoWithEmptyWindow":    {"{upgrade: auto, upgrade_window: ''}", func(im Image) bool { return im.UpgradeWindow.IsZero() }},
		"AutoWithNullWindow":     {"{upgrade: auto, upgrade_window: ~}", func(im Image) bool { return im.UpgradeWindow.IsZero() }},
		"ManualWithEmptyWindow":  {"{upgrade: manual, upgrade_window: ''}", func(im Image) bool { return im.UpgradeWindow.IsZero() }},
		"MinimumPollInterval":    {"{upgrade: auto, poll_interval: 1m}", func(im Image) bool { return im.PollInterval == time.Minute }},
		"MinimumReadyTimeout":    {"{ready_timeout: 5s}", func(im Image) bool { return im.ReadyTimeout == 5*time.Second }},
		"LongReadyTimeout":       {"{ready_timeout: 1h}", func(im Image) bool { return im.ReadyTimeout == time.Hour }},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(minimal + "image: " + tc.image + "\n"))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.want(c.Image) {
				t.Errorf("decoded %+v", c.Image)
			}
		})
	}
}

// TestUpgradeRules: each rule of image.upgrade and its keys is refused at load with a FieldError that names the
// field and its line, wraps the sentinel and says the rule.
func TestUpgradeRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, image string
		field       string
		sentinel    error
		says        string
	}{
		{"UnknownMode", "{upgrade: always}", "image.upgrade", ErrInvalid, "manual, auto"},
		{"ModeInCapitals", "{upgrade: Auto}", "image.upgrade", ErrInvalid, "manual, auto"},
		{"EmptyMode", "{upgrade: ''}", "image.upgrade", ErrInvalid, "manual, auto"},
		{"AutoWithPinnedTag", "{upgrade: auto, tag: 2.19.0}", "image.upgrade", ErrInvalid, "leave image.tag empty"},
		{"WindowWithManual", "{upgrade_window: 22:00-02:00}", "image.upgrade_window", ErrInvalid, "applies only when image.upgrade is auto"},
		{"WindowWithExplicitManual", "{upgrade: manual, upgrade_window: 01:00-02:00}", "image.upgrade_window", ErrInvalid, "applies only when image.upgrade is auto"},
		{"PollIntervalTooShort", "{upgrade: auto, poll_interval: 59s}", "image.poll_interval", ErrOutOfRange, "at least 1m"},
		{"PollIntervalZero", "{upgrade: auto, poll_interval: 0s}", "image.poll_interval", ErrOutOfRange, "at least 1m"},
		{"PollIntervalNegative", "{poll_interval: -1h}", "image.poll_interval", ErrOutOfRange, "at least 1m"},
		{"ReadyTimeoutTooShort", "{ready_timeout: 4s}", "image.ready_timeout", ErrOutOfRange, "at least 5s"},
		{"ReadyTimeoutZero", "{ready_timeout: 0s}", "image.ready_timeout", ErrOutOfRange, "at least 5s"},
		{"WindowEmptyRange", "{upgrade: auto, upgrade_window: 03:00-03:00}", "image.upgrade_window", ErrInvalid, "an empty window"},
		{"WindowHour24", "{upgrade: auto, upgrade_window: 22:00-24:00}", "image.upgrade_window", ErrInvalid, "HH:MM-HH:MM"},
		{"WindowMinute60", "{upgrade: auto, upgrade_window: 22:60-23:00}", "image.upgrade_window", ErrInvalid, "HH:MM-HH:MM"},
		{"WindowOneDigitHour", "{upgrade: auto, upgrade_window: 2:00-4:00}", "image.upgrade_window", ErrInvalid, "HH:MM-HH:MM"},
		{"WindowTwelveHour", "{upgrade: auto, upgrade_window: 10pm-2am}", "image.upgrade_window", ErrInvalid, "24-hour"},
		{"WindowWithSeconds", "{upgrade: auto, upgrade_window: 22:00:00-02:00:00}", "image.upgrade_window", ErrInvalid, "HH:MM-HH:MM"},
		{"WindowWithZone", "{upgrade: auto, upgrade_window: 22:00Z-02:00Z}", "image.upgrade_window", ErrInvalid, "UTC"},
		{"WindowWithSpaces", "{upgrade: auto, upgrade_window: 22:00 - 02:00}", "image.upgrade_window", ErrInvalid, "HH:MM-HH:MM"},
		{"WindowStartOnly", "{upgrade: auto, upgrade_window: '22:00'}", "image.upgrade_window", ErrInvalid, "HH:MM-HH:MM"},
		{"WindowNotAString", "{upgrade: auto, upgrade_window: [22:00, 02:00]}", "image.upgrade_window", ErrInvalid, "HH:MM-HH:MM"},
		{"WindowAMapping", "{upgrade: auto, upgrade_window: {start: 22:00, end: 02:00}}", "image.upgrade_window", ErrInvalid, "HH:MM-HH:MM"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(minimal + "image: " + tc.image + "\n"))
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("error %v does not wrap %v", err, tc.sentinel)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FieldError", err)
			}
			if fe.Field != tc.field || fe.Line != 6 {
				t.Errorf("field %q line %d, want %q line 6 (error: %v)", fe.Field, fe.Line, tc.field, err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.field) || !strings.Contains(msg, tc.says) {
				t.Errorf("message %q does not name %s and say %q", msg, tc.field, tc.says)
			}
			if fe.ExitCode() != 2 {
				t.Errorf("exit code = %d, want 2", fe.ExitCode())
			}
		})
	}
}

func TestParseWindow(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"00:00-23:59", "22:00-02:00", "23:59-00:00", "09:30-17:45", "00:01-00:00"} {
		w, err := ParseWindow(s)
		if err != nil || w.IsZero() || w.String() != s {
			t.Errorf("ParseWindow(%q) = %q, zero %t, %v", s, w, w.IsZero(), err)
		}
	}
	if w, err := ParseWindow(""); err != nil || !w.IsZero() || w.String() != "" || w != (Window{}) {
		t.Errorf(`ParseWindow("") = %#v, %v; want the zero Window`, w, err)
	}
	for _, s := range []string{"00:00-00:00", "24:00-01:00", "1:00-2:00", "01:00-", "-01:00", "01:00–02:00", " 01:00-02:00", "01:00-02:00\n"} {
		if w, err := ParseWindow(s); !errors.Is(err, ErrInvalid) || !w.IsZero() {
			t.Errorf("ParseWindow(%q) = %q, %v; want ErrInvalid", s, w, err)
		}
	}
}

func TestWindowContains(t *testing.T) {
	t.Parallel()
	at := func(hhmmss string) time.Time {
		tm, err := time.Parse("15:04:05", hhmmss)
		if err != nil {
			t.Fatal(err)
		}
		return time.Date(2025, 3, 9, tm.Hour(), tm.Minute(), tm.Second(), 0, time.UTC)
	}
	est := time.FixedZone("EST", -5*3600)
	ist := time.FixedZone("IST", 5*3600+1800)
	cases := []struct {
		name, window string
		t            time.Time
		want         bool
	}{
		{"Inside", "02:00-04:00", at("03:00:00"), true},
		{"Before", "02:00-04:00", at("01:59:59"), false},
		{"After", "02:00-04:00", at("04:30:00"), false},
		{"StartMinuteIncluded", "02:00-04:00", at("02:00:00"), true},
		{"LastMinuteIncluded", "02:00-04:00", at("03:59:59"), true},
		{"EndMinuteExcluded", "02:00-04:00", at("04:00:00"), false},
		{"WrapsBeforeMidnight", "22:00-02:00", at("23:30:00"), true},
		{"WrapsAtMidnight", "22:00-02:00", at("00:00:00"), true},
		{"WrapsAfterMidnight", "22:00-02:00", at("01:59:59"), true},
		{"WrapsStartIncluded", "22:00-02:00", at("22:00:00"), true},
		{"WrapsEndExcluded", "22:00-02:00", at("02:00:00"), false},
		{"WrapsOutsideAfternoon", "22:00-02:00", at("12:00:00"), false},
		{"WrapsJustBeforeStart", "22:00-02:00", at("21:59:59"), false},
		{"EndingAtMidnight", "23:00-00:00", at("23:59:59"), true},
		{"EndingAtMidnightExcludesIt", "23:00-00:00", at("00:00:00"), false},
		{"OneMinute", "12:34-12:35", at("12:34:59"), true},
		{"OneMinuteNext", "12:34-12:35", at("12:35:00"), false},
		{"AllButOneMinute", "00:01-00:00", at("00:00:30"), false},
		{"NonUTCInside", "02:00-04:00", time.Date(2025, 3, 8, 22, 0, 0, 0, est), true},                   // 03:00 UTC
		{"NonUTCOutside", "02:00-04:00", time.Date(2025, 3, 9, 3, 0, 0, 0, est), false},                  // 08:00 UTC
		{"NonUTCHalfHourZoneBeforeStart", "22:00-02:00", time.Date(2025, 3, 9, 3, 29, 0, 0, ist), false}, // 21:59 UTC
		{"NonUTCHalfHourZoneAtStart", "22:00-02:00", time.Date(2025, 3, 9, 3, 30, 0, 0, ist), true},      // 22:00 UTC
		{"NonUTCAcrossDate", "22:00-02:00", time.Date(2025, 3, 10, 5, 0, 0, 0, ist), true},               // 23:30 UTC the day before
		{"ZeroWindowIsAnyTime", "", at("13:13:13"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, err := ParseWindow(tc.window)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Contains(tc.t); got != tc.want {
				t.Errorf("%q.Contains(%s = %s UTC) = %t, want %t", tc.window, tc.t.Format(time.RFC3339), tc.t.UTC().Format("15:04:05"), got, tc.want)
			}
		})
	}
}

func TestDescribeShowsUpgrade(t *testing.T) {
	t.Parallel()
	for image, want := range map[string]string{
		"{}":              "upgrade=manual leader=",
		"{upgrade: auto}": "upgrade=auto leader=",
		"{upgrade: auto, upgrade_window: 22:00-02:00}": "upgrade=auto window=22:00-02:00 leader=",
	} {
		c, err := Parse([]byte(minimal + "image: " + image + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Describe(); !strings.Contains(got, want) {
			t.Errorf("image %s: Describe() = %q, want it to contain %q", image, got, want)
		}
	}
}
